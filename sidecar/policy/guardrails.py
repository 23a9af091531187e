"""Guardrail policy objects: what a guardrail checks, what it does, and for whom.

Built by the `guardrails:` schema (guardrails_schema.py) into each policy snapshot; the guardrails
feature (sidecar/features/guardrails/) runs them. A pattern guardrail holds its compiled
`PatternMatcher` (patterns.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from sidecar.core.guardrail_webhook import WebhookConfig
from sidecar.policy.patterns import PatternMatcher


class GuardrailType(StrEnum):
    """A guardrail's `type:` in the policy."""

    PII = "pii"
    PATTERN = "pattern"
    PROMPT_INJECTION = "prompt_injection"
    SIZE = "size"
    WEBHOOK = "webhook"  # a team's own detector over HTTP (features/guardrails/webhook)


class Action(StrEnum):
    """A guardrail's `action:`; the value is what logs, metrics and the error JSON spell."""

    BLOCK = "block"
    MASK = "mask"
    LOG = "log"


class Direction(StrEnum):
    """Which side of the exchange a guardrail reads (`direction:`)."""

    INPUT = "input"
    OUTPUT = "output"
    BOTH = "both"


class MessageScope(StrEnum):
    """Which messages an input guardrail reads (`messages:`): every role, or the user's only."""

    ALL = "all"
    USER = "user"


# Looked up per request: plain frozensets, as an enum member's attribute lookup costs more.
_READS_INPUT = frozenset({Direction.INPUT, Direction.BOTH})
_READS_OUTPUT = frozenset({Direction.OUTPUT, Direction.BOTH})
_OUTPUT_TYPES = frozenset({GuardrailType.PII, GuardrailType.PATTERN})
_EVERY_ROLE = MessageScope.ALL

GUARDRAIL_TYPES = tuple(t.value for t in GuardrailType)
ACTIONS = tuple(a.value for a in Action)
DIRECTIONS = tuple(d.value for d in Direction)
MESSAGE_SCOPES = tuple(m.value for m in MessageScope)
# Finding messages by guardrail type: they name the kind of problem, never the matched value.
FINDING_MESSAGES = MappingProxyType({
    GuardrailType.PII: "PII detected",
    GuardrailType.PATTERN: "Blocked pattern detected",
    GuardrailType.PROMPT_INJECTION: "Prompt injection detected",
    GuardrailType.SIZE: "Request too large for this guardrail",
    GuardrailType.WEBHOOK: "Flagged by the detector",  # the detector's own message when it gives one
})


@dataclass(frozen=True)
class Scope:
    """Empty lists mean 'any'; every non-empty list must match."""

    models: frozenset[str] = frozenset()
    tokens: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    def matches(self, model: str, token: str, team: str | None) -> bool:
        """Whether a request for `model` with `token` (of `team`, or None) is in this scope."""
        return (
            (not self.models or model in self.models)
            and (not self.tokens or token in self.tokens)
            and (not self.teams or (team is not None and team in self.teams))
        )


@dataclass(frozen=True)
class Guardrail:
    """One entry of the `guardrails:` section. `categories`, `matcher`, `threshold`, `max_chars` and
    `max_messages`, `webhook` are one type's each (pii, pattern, prompt_injection, size, webhook)."""

    key: str
    type: GuardrailType
    action: Action
    direction: Direction
    categories: frozenset[str] = frozenset()  # pii
    matcher: PatternMatcher | None = None  # pattern
    threshold: float = 0.5  # prompt_injection: measured best trade-off on the corpus (make bench)
    max_chars: int | None = None  # size: all message text together
    max_messages: int | None = None  # size
    messages: MessageScope = MessageScope.ALL  # which roles it reads
    scope: Scope = field(default_factory=Scope)
    # Off by default: runs only when the request names it in its `guardrails` field.
    default_on: bool = True
    hold_back: int = 64  # output streams: characters held so a split value is still caught
    webhook: WebhookConfig | None = None  # webhook: its detector (features/guardrails/webhook)

    @property
    def reads_input(self) -> bool:
        """Any input guardrail, built-in or webhook (`direction` input or both)."""
        return self.direction in _READS_INPUT

    @property
    def checks_input(self) -> bool:
        """A built-in input guardrail, run by the input scan (webhooks have their own call)."""
        return self.direction in _READS_INPUT and self.webhook is None

    @property
    def calls_webhook_on_output(self) -> bool:
        """A webhook guardrail that reads the answer (`direction` output or both)."""
        return self.webhook is not None and self.direction in _READS_OUTPUT

    @property
    def checks_output(self) -> bool:
        """A built-in guardrail the output guard runs on answers (pii and pattern, output or both)."""
        return self.direction in _READS_OUTPUT and self.type in _OUTPUT_TYPES

    def reads_role(self, role: str) -> bool:
        """Whether an input guardrail reads a message of `role` (`messages: user` reads the user's only)."""
        return self.messages is _EVERY_ROLE or role == "user"


class Applicable(NamedTuple):
    """The guardrails that apply to one (model, token, team, requested keys), by what runs them."""

    all: tuple[Guardrail, ...]
    checks_input: tuple[Guardrail, ...]  # the built-in input scan's
    webhook_input: tuple[Guardrail, ...]  # webhook guardrails that read the request
    checks_output: tuple[Guardrail, ...]  # the built-in output guard's
    webhook_output: tuple[Guardrail, ...]  # webhook guardrails that read the answer

    @classmethod
    def of(cls, guardrails: tuple[Guardrail, ...]) -> Applicable:
        """`guardrails` (in policy order) and each runner's share of them, in the same order."""
        return cls(guardrails, tuple(g for g in guardrails if g.checks_input),
                   tuple(g for g in guardrails if g.webhook is not None and g.reads_input),
                   tuple(g for g in guardrails if g.checks_output),
                   tuple(g for g in guardrails if g.calls_webhook_on_output))


# Distinct (model, token, team, requested) answers kept per policy snapshot: tokens x models of a
# policy, times the opt-in combinations requests name; past it they are computed each time.
MAX_CACHED_SCOPES = 4096


@dataclass(frozen=True)
class GuardrailSet:
    """The `guardrails:` section of one policy snapshot, in policy order, with its per-request answers cached."""

    guardrails: tuple[Guardrail, ...] = ()
    # Answers of `for_request`, built once per policy snapshot (a reload builds a new set): the
    # callout and the forwarding path each ask on every request.
    _cache: dict[tuple[str, str, str | None, frozenset[str]], Applicable] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _keys: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", frozenset(g.key for g in self.guardrails))  # read on every request

    def applicable(self, model: str, token: str, team: str | None,
                   requested: frozenset[str] = frozenset()) -> tuple[Guardrail, ...]:
        """Every guardrail that applies (see `for_request`), in policy order."""
        return self.for_request(model, token, team, requested).all

    def for_request(self, model: str, token: str, team: str | None,
                    requested: frozenset[str] = frozenset()) -> Applicable:
        """The guardrails on by default or requested whose scope matches, split by what runs them."""
        key = (model, token, team, requested)
        found = self._cache.get(key)
        if found is None:
            found = Applicable.of(tuple(g for g in self.guardrails if (g.default_on or g.key in requested)
                                        and g.scope.matches(model, token, team)))
            if len(self._cache) < MAX_CACHED_SCOPES:
                self._cache[key] = found
        return found

    def out_of_scope(self, model: str, token: str, team: str | None, requested: frozenset[str]) -> list[str]:
        """The keys of `requested` (sorted) whose guardrail's scope leaves this model, token and team out."""
        return sorted(g.key for g in self.guardrails if g.key in requested and not g.scope.matches(model, token, team))

    def keys(self) -> frozenset[str]:
        """Every guardrail key the policy defines (what a request's `guardrails` field may name)."""
        return self._keys
