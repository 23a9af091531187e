"""The one table from transport failures to gateway errors and breaker outcomes.

Transport failures (the HTTP client's exceptions while talking to a provider) are mapped in ONE
table, `TRANSPORT_FAILURES`, keyed by `Transport` kind: per kind, the gateway error it becomes in
each `Phase` of a forwarded exchange and the breaker `Outcome` it books when it ends one raw. The
cut: core holds the mapping by *kind* and never imports aiohttp; `sidecar.forward.failures`
classifies aiohttp/asyncio exceptions into kinds (a few isinstance checks) and is the only place
that knows the client library, in the spirit of httpx's `_transports/default.py` mapping.
A gateway error's own outcome comes from `breaker_outcome` (the second half of the table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sidecar.core.errors import (
    GatewayError,
    ProviderError,
    ShuttingDown,
    StreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from sidecar.core.kinds import Outcome


class Transport(StrEnum):
    """What went wrong on the wire, independent of the HTTP client library that reported it."""

    CONNECT = "connect"  # no connection (refused, DNS, TLS), or any other client-library failure
    TIMEOUT = "timeout"  # one of the exchange's deadlines passed
    DISCONNECTED = "disconnected"  # the provider closed the connection before its answer was complete
    PAYLOAD = "payload"  # the answer's framing broke (chunked encoding, content length, compression)
    RESET = "reset"  # a write to a connection already closed (the client library's reset error)
    CLIENT_GONE = "client_gone"  # our handler was cancelled or a plain socket reset: the client left


class Phase(StrEnum):
    """Where in a forwarded exchange a failure happened; the client sees different errors."""

    ATTEMPT = "attempt"  # sending, awaiting the answer's head, reading a whole answer: a fallback may follow
    ANSWER = "answer"  # relaying the answer, before the client got a byte: a JSON error with its status
    STREAM = "stream"  # after the client's first byte: an error event, then `data: [DONE]`


ErrorFactory = Callable[[str], GatewayError]
"""Builds the client's error from the failing exception's type name (e.g. `ClientConnectorError`)."""


@dataclass(frozen=True)
class FailureRule:
    """One row: the error per phase (None: not the provider's failure, re-raised as is) and the
    breaker outcome when the raw exception ends an exchange."""

    outcome: Outcome
    errors: Mapping[Phase, ErrorFactory] | None


def _unreachable(name: str) -> GatewayError:
    return UpstreamUnreachable(f"Provider unreachable: {name}")


_CONNECTION_BROKE: Mapping[Phase, ErrorFactory] = {
    Phase.ATTEMPT: _unreachable,
    Phase.ANSWER: lambda _name: UpstreamUnreachable("Provider connection failed"),
    Phase.STREAM: lambda _name: StreamBroken(),
}

TRANSPORT_FAILURES: Mapping[Transport, FailureRule] = {
    Transport.TIMEOUT: FailureRule(Outcome.TIMEOUT, {
        Phase.ATTEMPT: lambda _name: UpstreamTimeout(),
        Phase.ANSWER: lambda _name: UpstreamTimeout(),
        Phase.STREAM: lambda _name: UpstreamTimeout("Provider stalled mid-stream"),
    }),
    Transport.CONNECT: FailureRule(Outcome.CONNECT, _CONNECTION_BROKE),
    Transport.DISCONNECTED: FailureRule(Outcome.CONNECT, _CONNECTION_BROKE),
    Transport.PAYLOAD: FailureRule(Outcome.CONNECT, _CONNECTION_BROKE),
    # While talking to the provider a reset is the provider's connection; a reset that reaches the
    # end of the exchange raw came from writing to the client (the relay turns provider-side
    # breakage into errors first), so the breaker learns nothing from it.
    Transport.RESET: FailureRule(Outcome.NEUTRAL, _CONNECTION_BROKE),
    Transport.CLIENT_GONE: FailureRule(Outcome.NEUTRAL, None),
}

# A gateway error's outcome: the first matching class wins; other ProviderErrors go by status.
_ERROR_OUTCOMES: tuple[tuple[type[GatewayError], Outcome], ...] = (
    (ShuttingDown, Outcome.NEUTRAL),
    (UpstreamTimeout, Outcome.TIMEOUT),
    (UpstreamUnreachable, Outcome.CONNECT),
    (StreamBroken, Outcome.CONNECT),
)


def transport_error(kind: Transport, phase: Phase, name: str) -> GatewayError | None:
    """The client's error for a transport failure of `kind` in `phase`; None: re-raise it as is.

    `name` is the exception's type name, quoted in the attempt phase's message.
    """
    errors = TRANSPORT_FAILURES[kind].errors
    return None if errors is None else errors[phase](name)


def transport_outcome(kind: Transport | None) -> Outcome:
    """The breaker outcome of a raw exception ending an exchange (None: not a transport failure)."""
    return Outcome.NEUTRAL if kind is None else TRANSPORT_FAILURES[kind].outcome


def breaker_outcome(error: GatewayError) -> Outcome:
    """What a gateway error says about the provider's health, in breaker terms."""
    for kind, outcome in _ERROR_OUTCOMES:
        if isinstance(error, kind):
            return outcome
    if isinstance(error, ProviderError):
        return status_outcome(error.status)
    return Outcome.SUCCESS  # the provider answered; a guardrail or the request itself said no


def status_outcome(status: int) -> Outcome:
    """A provider's HTTP status in breaker terms: 429, any 5xx, or healthy (2xx, the client's own 4xx)."""
    if status == 429:
        return Outcome.RATE_LIMITED
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.SUCCESS
