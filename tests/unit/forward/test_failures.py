"""The one failure table (core.failure_table) read through the aiohttp adapter (forward.failures)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sidecar.core.errors import (
    BreakerOpen,
    GatewayError,
    GuardrailBlocked,
    InvalidRequest,
    ProviderError,
    ShuttingDown,
    StreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from sidecar.core.failure_table import TRANSPORT_FAILURES, Phase, Transport, breaker_outcome, status_outcome
from sidecar.core.kinds import Outcome
from sidecar.forward.failures import NOT_RETRYABLE, as_gateway_error, exit_outcome, provider_failure, transport_kind
from sidecar.providers.base import provider_rejection

CONNECTOR = aiohttp.ClientConnectorError(aiohttp.client_reqrep.ConnectionKey(
    "h", 1, False, True, None, None, None), OSError(111, "refused"))
RESET = aiohttp.ClientConnectionResetError("Cannot write to closing transport")


def test_every_kind_has_a_row_and_every_row_covers_every_phase() -> None:
    assert set(TRANSPORT_FAILURES) == set(Transport)
    for rule in TRANSPORT_FAILURES.values():
        assert rule.errors is None or set(rule.errors) == set(Phase)


@pytest.mark.parametrize(("exc", "kind"), [
    (TimeoutError(), Transport.TIMEOUT),
    (aiohttp.ServerTimeoutError(), Transport.TIMEOUT),  # a ClientError too: the timeout wins
    (asyncio.CancelledError(), Transport.CLIENT_GONE),
    (ConnectionResetError(), Transport.CLIENT_GONE),
    (RESET, Transport.RESET),
    (aiohttp.ServerDisconnectedError(), Transport.DISCONNECTED),
    (aiohttp.ClientPayloadError("broken"), Transport.PAYLOAD),
    (CONNECTOR, Transport.CONNECT),
    (aiohttp.ClientConnectionError(), Transport.CONNECT),
    (ValueError(), None),
])
def test_aiohttp_exceptions_have_their_kind(exc: BaseException, kind: Transport | None) -> None:
    assert transport_kind(exc) is kind


@pytest.mark.parametrize(("exc", "attempt", "answer", "stream"), [
    (TimeoutError(), ("provider_timeout", 504, "Provider timed out"),
     ("provider_timeout", 504, "Provider timed out"), ("provider_timeout", 504, "Provider stalled mid-stream")),
    (CONNECTOR, ("provider_unreachable", 502, "Provider unreachable: ClientConnectorError"),
     ("provider_unreachable", 502, "Provider connection failed"),
     ("stream_broken", 502, "Provider connection broke mid-stream")),
    (RESET, ("provider_unreachable", 502, "Provider unreachable: ClientConnectionResetError"),
     ("provider_unreachable", 502, "Provider connection failed"),
     ("stream_broken", 502, "Provider connection broke mid-stream")),
    (aiohttp.ClientPayloadError("x"), ("provider_unreachable", 502, "Provider unreachable: ClientPayloadError"),
     ("provider_unreachable", 502, "Provider connection failed"),
     ("stream_broken", 502, "Provider connection broke mid-stream")),
])
def test_errors_per_phase(exc: BaseException, attempt: tuple[str, int, str], answer: tuple[str, int, str],
                          stream: tuple[str, int, str]) -> None:
    for phase, (code, status, message) in zip(Phase, (attempt, answer, stream), strict=True):
        error = as_gateway_error(exc, phase)
        assert error is not None
        assert (error.code, error.status, error.message) == (code, status, message)


def test_client_gone_and_bugs_are_re_raised() -> None:
    for phase in Phase:
        assert as_gateway_error(asyncio.CancelledError(), phase) is None
        assert as_gateway_error(ConnectionResetError(), phase) is None
        assert as_gateway_error(KeyError("x"), phase) is None


def test_gateway_errors_pass_through() -> None:
    error = InvalidRequest("no")
    assert as_gateway_error(error, Phase.ATTEMPT) is error


def test_retryable_before_the_answer_only() -> None:
    assert isinstance(as_gateway_error(CONNECTOR, Phase.ATTEMPT), UpstreamUnreachable)
    broken = as_gateway_error(CONNECTOR, Phase.STREAM)
    assert isinstance(broken, StreamBroken) and not broken.retryable


@pytest.mark.parametrize(("exc", "outcome"), [
    (asyncio.CancelledError(), Outcome.NEUTRAL),
    (ConnectionResetError(), Outcome.NEUTRAL),
    (RESET, Outcome.NEUTRAL),
    (TimeoutError(), Outcome.TIMEOUT),
    (CONNECTOR, Outcome.CONNECT),
    (aiohttp.ServerDisconnectedError(), Outcome.CONNECT),
    (aiohttp.ClientPayloadError("x"), Outcome.CONNECT),
    (RuntimeError(), Outcome.NEUTRAL),
    (UpstreamTimeout(), Outcome.TIMEOUT),
    (ShuttingDown("bye"), Outcome.NEUTRAL),
])
def test_outcome_of_an_exception_ending_an_exchange(exc: BaseException, outcome: Outcome) -> None:
    assert exit_outcome(exc) is outcome


@pytest.mark.parametrize(("error", "outcome"), [
    (ShuttingDown("bye"), Outcome.NEUTRAL),
    (UpstreamTimeout(), Outcome.TIMEOUT),
    (UpstreamUnreachable(), Outcome.CONNECT),
    (StreamBroken(), Outcome.CONNECT),
    (ProviderError("busy", status=429), Outcome.RATE_LIMITED),
    (ProviderError("down", status=503), Outcome.SERVER_ERROR),
    (ProviderError("bad request", status=400), Outcome.SUCCESS),
    (GuardrailBlocked("g", "block", []), Outcome.SUCCESS),
    (BreakerOpen("open"), Outcome.SUCCESS),
])
def test_breaker_outcome_of_gateway_errors(error: GatewayError, outcome: Outcome) -> None:
    assert breaker_outcome(error) is outcome


def test_status_outcome() -> None:
    assert [status_outcome(s) for s in (200, 400, 404, 429, 500, 503)] == [
        Outcome.SUCCESS, Outcome.SUCCESS, Outcome.SUCCESS, Outcome.RATE_LIMITED, Outcome.SERVER_ERROR,
        Outcome.SERVER_ERROR]


@pytest.mark.parametrize(("status", "code"), [
    (401, "provider_authentication_failed"), (402, "provider_billing_error"), (403, "provider_permission_denied"),
    (404, "provider_not_found"),
])
def test_a_provider_rejecting_the_gateways_deployment_says_do_not_retry(status: int, code: str) -> None:
    # The official OpenAI SDKs retry a 502 twice unless told not to: each retry hits the same bad key.
    error = provider_failure(provider_rejection(status, "nope"), Phase.ANSWER)
    assert (error.status, error.code, error.headers) == (502, code, {"x-should-retry": "false"})
    assert code in NOT_RETRYABLE


@pytest.mark.parametrize("error", [
    ProviderError("x", code="endpoint_not_supported"), ProviderError("x", code="provider_misconfigured"),
    ProviderError("x", code="bad_provider_stream"),
])
def test_configuration_faults_say_do_not_retry(error: ProviderError) -> None:
    assert provider_failure(error, Phase.ANSWER).headers == {"x-should-retry": "false"}


@pytest.mark.parametrize("exc", [
    ProviderError("busy", status=502, code="upstream_500", retryable=True), UpstreamTimeout(), UpstreamUnreachable(),
    ProviderError("slow down", status=429, code="rate_limit_exceeded"), TimeoutError(), CONNECTOR,
    InvalidRequest("bad", code="invalid_value"),
])
def test_failures_a_retry_may_fix_carry_no_hint(exc: Exception) -> None:
    assert "x-should-retry" not in provider_failure(exc, Phase.ANSWER).headers


def test_no_hint_in_a_stream_where_there_are_no_headers() -> None:
    assert provider_failure(provider_rejection(401, "nope"), Phase.STREAM).headers == {}
