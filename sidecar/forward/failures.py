"""The HTTP client's exceptions as `Transport` kinds: the thin aiohttp side of core's failure table.

`sidecar.core.failure_table.TRANSPORT_FAILURES` says what each kind becomes (an error per phase, a
breaker outcome); this module only says which kind an aiohttp/asyncio exception is, so core
never imports aiohttp. Every failure a relay answers the client with passes `provider_failure`,
which also adds the retry hint (`NOT_RETRYABLE`) the official OpenAI SDKs obey.
"""

from __future__ import annotations

import asyncio

import aiohttp

from sidecar.core.errors import GatewayError
from sidecar.core.failure_table import Phase, Transport, breaker_outcome, transport_error, transport_outcome
from sidecar.core.kinds import Outcome

NOT_STREAMED = "bad_provider_stream"
"""The code of a stream request the provider answered with a whole JSON answer (no event stream)."""

# The OpenAI SDKs' own header for "do not retry" (they read it before the status; without it they
# retry 408, 409, 429 and 5xx twice). Sent where the same request would fail the same way again:
# the provider refused the gateway's own key, permissions, billing or model name (its 401, 403, 402,
# 404: a fallback deployment was tried first), the deployment cannot be built or serve the
# endpoint, or the provider does not stream. Only on answers with a status: in a stream the error
# event follows a 200.
SHOULD_RETRY_HEADER = "x-should-retry"
NOT_RETRYABLE: frozenset[str] = frozenset({
    "provider_authentication_failed", "provider_permission_denied", "provider_billing_error",
    "provider_not_found", "provider_misconfigured", "endpoint_not_supported", NOT_STREAMED})

PROVIDER_FAILURES: tuple[type[Exception], ...] = (GatewayError, TimeoutError, aiohttp.ClientError)
"""What a relay catches as the exchange failing: gateway errors and the provider's transport (aiohttp's
timeouts are TimeoutErrors); `as_gateway_error` maps each of them to an error, never to None."""

# Most specific first: aiohttp's reset and timeout errors are ClientErrors too.
_KINDS: tuple[tuple[type[BaseException], Transport], ...] = (
    (TimeoutError, Transport.TIMEOUT),
    (asyncio.CancelledError, Transport.CLIENT_GONE),
    (aiohttp.ClientConnectionResetError, Transport.RESET),
    (ConnectionResetError, Transport.CLIENT_GONE),  # a plain socket reset: the client's connection
    (aiohttp.ServerDisconnectedError, Transport.DISCONNECTED),
    (aiohttp.ClientPayloadError, Transport.PAYLOAD),
    (aiohttp.ClientError, Transport.CONNECT),
)


def transport_kind(exc: BaseException) -> Transport | None:
    """The kind of a transport failure; None for anything else (a bug, a GatewayError)."""
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    return None


def as_gateway_error(exc: BaseException, phase: Phase) -> GatewayError | None:
    """`exc` in the gateway's terms for `phase`: GatewayErrors pass through; None means re-raise."""
    if isinstance(exc, GatewayError):
        return exc
    kind = transport_kind(exc)
    return None if kind is None else transport_error(kind, phase, type(exc).__name__)


def provider_failure(exc: BaseException, phase: Phase) -> GatewayError:
    """A failure caught as one of PROVIDER_FAILURES, in the gateway's terms (re-raised if the table
    does not know it), with `x-should-retry: false` when its code is in NOT_RETRYABLE."""
    error = as_gateway_error(exc, phase)
    if error is None:
        raise exc
    if error.code in NOT_RETRYABLE and phase is not Phase.STREAM:
        error.headers[SHOULD_RETRY_HEADER] = "false"
    return error


def exit_outcome(exc: BaseException) -> Outcome:
    """The breaker outcome of an exception that ended an exchange (gateway error or raw failure)."""
    if isinstance(exc, GatewayError):
        return breaker_outcome(exc)
    return transport_outcome(transport_kind(exc))
