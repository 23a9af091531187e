"""Guardrail policy objects: what a guardrail checks, what it does, and for whom."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from sidecar.features.guardrails.pattern_guard import PatternMatcher
from sidecar.features.guardrails.webhook.config import WebhookConfig

GUARDRAIL_TYPES = ("pii", "pattern", "prompt_injection", "size", "webhook")
ACTIONS = ("block", "mask", "log")
DIRECTIONS = ("input", "output", "both")
MESSAGE_SCOPES = ("all", "user")
# Finding messages by guardrail type: they name the kind of problem, never the matched value.
FINDING_MESSAGES = MappingProxyType({
    "pii": "PII detected",
    "pattern": "Blocked pattern detected",
    "prompt_injection": "Prompt injection detected",
    "size": "Request too large for this guardrail",
    "webhook": "Flagged by the detector",  # the detector's own message when it gives one
})


@dataclass(frozen=True)
class Scope:
    """Empty lists mean 'any'; every non-empty list must match."""

    models: frozenset[str] = frozenset()
    tokens: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    def matches(self, model: str, token: str, team: str | None) -> bool:
        return (
            (not self.models or model in self.models)
            and (not self.tokens or token in self.tokens)
            and (not self.teams or (team is not None and team in self.teams))
        )


@dataclass(frozen=True)
class Guardrail:
    key: str
    type: str
    action: str
    direction: str
    categories: frozenset[str] = frozenset()  # pii
    matcher: PatternMatcher | None = None  # pattern
    threshold: float = 0.5  # prompt_injection: measured best trade-off on the corpus (make bench)
    max_chars: int | None = None  # size: all message text together
    max_messages: int | None = None  # size
    messages: str = "all"  # which roles it reads: all, or user only
    scope: Scope = field(default_factory=Scope)
    # Off by default: runs only when the request names it in its `guardrails` field.
    default_on: bool = True
    hold_back: int = 64  # output streams: characters held so a split value is still caught
    webhook: WebhookConfig | None = None  # webhook: its detector (features/guardrails/webhook)

    @property
    def checks_input(self) -> bool:
        return self.direction in ("input", "both") and self.webhook is None  # webhooks: their own stage

    @property
    def checks_output(self) -> bool:
        return self.direction in ("output", "both") and self.type in ("pii", "pattern")

    def reads_role(self, role: str) -> bool:
        return self.messages == "all" or role == "user"


@dataclass(frozen=True)
class GuardrailSet:
    guardrails: tuple[Guardrail, ...] = ()

    def applicable(self, model: str, token: str, team: str | None,
                   requested: frozenset[str] = frozenset()) -> tuple[Guardrail, ...]:
        return tuple(
            g for g in self.guardrails
            if (g.default_on or g.key in requested) and g.scope.matches(model, token, team)
        )

    def keys(self) -> frozenset[str]:
        return frozenset(g.key for g in self.guardrails)
