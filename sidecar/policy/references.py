"""Cross-references between sections: a name one section uses must be defined in another.

Checked against the names a section defines (valid entries or not), so an error points at the
line that uses the name (`guardrails.pii.scope.teams: unknown team 'ops'`) whichever file
defines the other side. Sections added later (limits) use `check_reference` and `teams_of` for
the same wording.
"""

from __future__ import annotations

from collections.abc import Collection

import yaml

from sidecar.core.tokens import TokenStore
from sidecar.policy.reader import Located


def check_reference(where: Located, kind: str, name: str, known: Collection[str]) -> bool:
    """True when `name` is defined; otherwise logs `unknown KIND 'NAME' (defined: …)` at `where`."""
    if name in known:
        return True
    where.error(f"unknown {kind} '{name}' (defined: {', '.join(sorted(known)) or 'none'})")
    return False


def teams_of(tokens: TokenStore) -> frozenset[str]:
    """Teams exist by being named on at least one token."""
    return frozenset(r.team for r in tokens.by_hash.values() if r.team is not None)


def lookup(where: Located, *keys: str) -> Located | None:
    """The node at `keys` below `where`, read silently (the section parser already reported shape errors)."""
    found = where
    for key in keys:
        if not isinstance(found.node, yaml.MappingNode):
            return None
        value = next((v for k, v in found.node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if value is None:
            return None
        found = found.child(value, key)
    return found


def defined_names(section: Located | None) -> frozenset[str]:
    """The keys a name → entry section defines, valid entries or not (a broken entry is reported
    once, where it is, rather than again at every place that names it)."""
    if section is None or not isinstance(section.node, yaml.MappingNode):
        return frozenset()
    return frozenset(k.value for k, _ in section.node.value if isinstance(k, yaml.ScalarNode))


def check_guardrail_scopes(guardrails_section: Located | None, models_section: Located | None,
                           tokens_section: Located | None, tokens: TokenStore) -> None:
    """A guardrail's `scope: {models, tokens, teams}` names must exist; errors on the item's line."""
    if guardrails_section is None or not isinstance(guardrails_section.node, yaml.MappingNode):
        return
    known = {"models": ("model", defined_names(models_section)),
             "tokens": ("token", defined_names(tokens_section)),
             "teams": ("team", teams_of(tokens))}
    for key_node, _ in guardrails_section.node.value:
        for field, (kind, names) in known.items():
            listed = lookup(guardrails_section, key_node.value, "scope", field)
            if listed is None or not isinstance(listed.node, yaml.SequenceNode):
                continue
            for item in listed.node.value:
                if isinstance(item, yaml.ScalarNode) and item.value not in names:
                    listed.log.add(listed.file, item, listed.path,
                                   f"unknown {kind} '{item.value}' (defined: {', '.join(sorted(names)) or 'none'})")
