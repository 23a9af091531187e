"""The policy object of one `type: webhook` guardrail: where and how to call a team's detector.

Pure data, as `routes.py` is for models and breakers: `sidecar/policy/webhook_schema.py` builds it
from the policy, `sidecar/features/guardrails/webhook` calls the detector with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sidecar.core.credentials import Credential
from sidecar.core.routes import BreakerConfig


class OnError(StrEnum):
    """What a request gets when the detector cannot answer (timeout, error, garbage, breaker open)."""

    OPEN = "open"  # the guardrail is skipped: the request goes on, the error is logged and counted
    CLOSED = "closed"  # the request is denied with 503 `guardrail_unavailable` and Retry-After


# A dead detector should cost one timeout per cool-down: a few failures in a row open its breaker.
DEFAULT_BREAKER = BreakerConfig(consecutive_failures=3, cooldown=10.0)


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how to call one detector. Durations are seconds.

    `connect_timeout` bounds opening a connection, `timeout` the whole call (waiting for a pooled
    connection, sending, the detector's work and its answer). `max_connections` bounds the
    connections (and so the concurrent calls) to this detector. `stream_chars` is the streaming
    cadence: one call per that many characters held back. `threshold`, when set, ignores findings
    whose score is below it (findings without a score always count).
    """

    url: str
    # (name, value) pairs; a value is plain text or a credential read at call time (a rotated Secret
    # needs no reload). A tuple, so the frozen policy objects stay hashable.
    headers: tuple[tuple[str, str | Credential], ...] = ()
    api_key: Credential = field(default_factory=Credential)  # sent as `Authorization: Bearer …`
    timeout: float = 0.5
    connect_timeout: float = 0.25
    on_error: OnError = OnError.CLOSED
    threshold: float | None = None
    max_connections: int = 32
    stream_chars: int = 512
    breaker: BreakerConfig = DEFAULT_BREAKER

    def request_headers(self) -> dict[str, str]:
        """The headers of one call (name -> value), credentials read now; a credential that is
        unset is left out; `api_key` becomes `Authorization: Bearer …` (RFC 6750)."""
        headers: dict[str, str] = {}
        for name, value in self.headers:
            text = value if isinstance(value, str) else value.value()
            if text is not None:
                headers[name] = text
        key = self.api_key.value()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers
