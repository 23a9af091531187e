"""Cross-references between sections: a name one section uses must be defined in another.

Checked after every section is parsed, so an error points at the line that uses the name
(`tokens.ci.models: unknown model 'gpt-5'`) whichever file defines the other side. Sections
added later (limits, guardrails) use `check_reference` and `teams_of` for the same wording.
"""

from __future__ import annotations

from collections.abc import Collection

import yaml

from sidecar.policy.reader import Located
from sidecar.tokens import TokenStore


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


def check_token_models(tokens_section: Located | None, models_section: Located | None) -> None:
    """Every model on a token's allow-list must exist; the error is on the list item's line."""
    if tokens_section is None or not isinstance(tokens_section.node, yaml.MappingNode):
        return
    known = defined_names(models_section)
    for name_node, _ in tokens_section.node.value:
        allowed = lookup(tokens_section, name_node.value, "models")
        if allowed is None or not isinstance(allowed.node, yaml.SequenceNode):
            continue
        for item in allowed.node.value:
            if isinstance(item, yaml.ScalarNode) and item.value not in known:
                allowed.log.add(allowed.file, item, allowed.path, f"unknown model '{item.value}'")
