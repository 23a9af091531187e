"""`guardrails:` section: key -> {type, action, direction, categories, scope, …}."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import TypedDict

import yaml

from sidecar.core.entity import ALL_CATEGORIES
from sidecar.core.guardrail_webhook import WebhookConfig
from sidecar.policy.guardrails import (
    ACTIONS,
    DIRECTIONS,
    GUARDRAIL_TYPES,
    MESSAGE_SCOPES,
    Action,
    Direction,
    Guardrail,
    GuardrailSet,
    GuardrailType,
    MessageScope,
    Scope,
)
from sidecar.policy.patterns import PatternMatcher, compile_patterns
from sidecar.policy.reader import Located, Mapping
from sidecar.policy.webhook_schema import WEBHOOK_KEYS, parse_webhook

_TYPE_KEYS: MappingProxyType[GuardrailType, frozenset[str]] = MappingProxyType({
    GuardrailType.PII: frozenset({"categories"}),
    GuardrailType.PATTERN: frozenset({"deny_regexes", "deny_keywords", "allow_regexes"}),
    GuardrailType.PROMPT_INJECTION: frozenset({"threshold"}),
    GuardrailType.SIZE: frozenset({"max_chars", "max_messages"}),
    GuardrailType.WEBHOOK: WEBHOOK_KEYS,
})
# Guardrails that flag a whole text (no span): there is nothing to mask.
_CANNOT_MASK = frozenset({GuardrailType.PROMPT_INJECTION, GuardrailType.SIZE})
# Read the request only (the output guard runs pii, pattern and webhook guardrails).
_INPUT_ONLY = frozenset({GuardrailType.PROMPT_INJECTION, GuardrailType.SIZE})


class _TypeSpecific(TypedDict, total=False):
    """The keys only one guardrail type takes, as Guardrail's fields."""

    categories: frozenset[str]
    matcher: PatternMatcher
    threshold: float
    max_chars: int | None
    max_messages: int | None
    webhook: WebhookConfig


def parse_guardrails(section: Located) -> GuardrailSet:
    """The `guardrails:` section -> GuardrailSet; a broken entry is reported (FILE:LINE) and left out."""
    mapping = section.mapping()
    if mapping is None:
        return GuardrailSet()
    parsed = (_parse_guardrail(key, where) for key, where in mapping.named())
    return GuardrailSet(tuple(g for g in parsed if g is not None))


def _parse_guardrail(key: str, where: Located) -> Guardrail | None:
    fields = where.mapping()
    if fields is None:
        return None
    type_at = fields.require("type")
    type_name = type_at.as_choice(GUARDRAIL_TYPES) if type_at else None
    kind = GuardrailType(type_name) if type_name else None
    action_name = _required_choice(fields, "action", ACTIONS)
    action = Action(action_name) if action_name else None
    direction = fields.read("direction", lambda w: w.as_choice(DIRECTIONS), "input")
    messages = fields.read("messages", lambda w: w.as_choice(MESSAGE_SCOPES), "all")
    default_on = fields.read("default_on", Located.as_bool, True)
    hold_back = fields.read("hold_back", lambda w: w.as_int(minimum=1), 64)
    scope_at = fields.get("scope")
    scope = _scope(scope_at) if scope_at else Scope()
    specific = _type_specific(kind, fields, action, direction) if kind else {}
    _reject_foreign_keys(kind, fields)
    fields.finish()
    if kind is None or action is None or specific is None:
        return None
    if action is Action.MASK and kind in _CANNOT_MASK:
        where.error(f"a {kind} guardrail cannot mask; use block or log")
        return None
    if direction != "input" and kind in _INPUT_ONLY:
        # Its output half would never run: an operator reading `both` must not believe answers are checked.
        where.error(f"a {kind} guardrail reads requests only: direction {direction} does not apply (use input)")
        return None
    return Guardrail(key=key, type=kind, action=action, direction=Direction(direction),
                     messages=MessageScope(messages),
                     scope=scope, default_on=default_on, hold_back=hold_back, **specific)


def _required_choice(fields: Mapping, key: str, choices: tuple[str, ...]) -> str | None:
    at = fields.require(key)
    return at.as_choice(choices) if at else None


def _type_specific(kind: GuardrailType, fields: Mapping, action: Action | None,
                   direction: str) -> _TypeSpecific | None:
    if kind is GuardrailType.WEBHOOK:
        webhook = parse_webhook(fields, action)
        return None if webhook is None else {"webhook": webhook}
    if kind is GuardrailType.PII:
        return {"categories": _categories(fields)}
    if kind is GuardrailType.PATTERN:
        matcher = _matcher(fields, streams=direction != "input")
        return None if matcher is None else {"matcher": matcher}
    if kind is GuardrailType.PROMPT_INJECTION:
        return {"threshold": fields.read("threshold", lambda w: w.as_number(0.0, 1.0), 0.5)}
    max_chars = fields.read("max_chars", lambda w: w.as_int(minimum=1), None)
    max_messages = fields.read("max_messages", lambda w: w.as_int(minimum=1), None)
    if max_chars is None and max_messages is None:
        fields.where.error("a size guardrail needs max_chars or max_messages")
        return None
    return {"max_chars": max_chars, "max_messages": max_messages}


def _reject_foreign_keys(kind: GuardrailType | None, fields: Mapping) -> None:
    if kind is None:
        return
    foreign = sorted(set().union(*_TYPE_KEYS.values()) - _TYPE_KEYS[kind])
    for name in foreign:
        found = fields.get(name)
        if found is not None:  # once per key, naming every type that takes it (`threshold`: two)
            owners = " and ".join(t for t, keys in _TYPE_KEYS.items() if name in keys)
            found.error(f"only {owners} guardrails take {name}")


def _categories(fields: Mapping) -> frozenset[str]:
    at = fields.get("categories")
    if at is None:
        return ALL_CATEGORIES
    names = at.str_list() or ()
    unknown = sorted(set(names) - ALL_CATEGORIES)
    if unknown:
        at.error(f"unknown categories {', '.join(unknown)} (known: {', '.join(sorted(ALL_CATEGORIES))})")
    return frozenset(names) & ALL_CATEGORIES


def _matcher(fields: Mapping, *, streams: bool) -> PatternMatcher | None:
    no_strings: tuple[str, ...] = ()
    lists = {name: (fields.get(name), fields.read(name, Located.str_list, no_strings)) for name in
             ("deny_regexes", "deny_keywords", "allow_regexes")}
    ok = True
    for name in ("deny_regexes", "allow_regexes"):
        at, sources = lists[name]
        for index, source in enumerate(sources):
            try:
                re.compile(source)
            except re.error as exc:
                assert at is not None and isinstance(at.node, yaml.SequenceNode)
                at.child(at.node.value[index], index).error(f"not a valid regular expression: {exc}")  # its own line
                ok = False
    at, keywords = lists["deny_keywords"]
    for index, keyword in enumerate(keywords):
        if not keyword.strip():  # it would never match: a policy must not look stricter than it is
            assert at is not None and isinstance(at.node, yaml.SequenceNode)
            at.child(at.node.value[index], index).error("an empty keyword matches nothing")
            ok = False
    if not lists["deny_regexes"][1] and not lists["deny_keywords"][1]:
        fields.where.error("a pattern guardrail needs deny_regexes or deny_keywords")
        ok = False
    if not ok:
        return None
    return compile_patterns(lists["deny_regexes"][1], lists["deny_keywords"][1], lists["allow_regexes"][1],
                            partial=streams)


def _scope(where: Located) -> Scope:
    fields = where.mapping()
    if fields is None:
        return Scope()
    no_names: tuple[str, ...] = ()
    scope = Scope(
        models=frozenset(fields.read("models", Located.str_list, no_names)),
        tokens=frozenset(fields.read("tokens", Located.str_list, no_names)),
        teams=frozenset(fields.read("teams", Located.str_list, no_names)),
    )
    fields.finish()
    return scope
