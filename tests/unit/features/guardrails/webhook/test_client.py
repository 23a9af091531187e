"""The detector client against a real local detector: answers, faults, timeouts, breaker, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sidecar.core.credentials import Credential
from sidecar.core.guardrail_webhook import WebhookConfig
from sidecar.core.routes import BreakerConfig
from sidecar.features.guardrails.webhook.client import CallError, CallResult, WebhookClient
from sidecar.features.guardrails.webhook.wire import CallContext, Direction, Span, Text
from sidecar.features.observability.metrics import GatewayMetrics
from tests.detector_server import DetectorServer

TEXTS = [Text("messages[0].content", "write to jane@example.com about BANANA-7", role="user")]


def context(key: str = "detector", *, dry_run: bool = False) -> CallContext:
    return CallContext("req_client", key, Direction.INPUT, "mask", "gpt-4", "checkout", "payments", dry_run=dry_run)


@contextlib.asynccontextmanager
async def running(metrics: GatewayMetrics | None = None) -> AsyncIterator[WebhookClient]:
    client = WebhookClient(metrics)
    async with contextlib.asynccontextmanager(lambda: client.session())():
        yield client


def config(detector: DetectorServer, mode: str = "check", **changes: object) -> WebhookConfig:
    return replace(WebhookConfig(url=f"{detector.url}/{mode}"), **changes)  # type: ignore[arg-type]


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_findings_come_back_with_their_spans(detector: DetectorServer) -> None:
    metrics = GatewayMetrics()
    async with running(metrics) as client:
        result = await client.inspect(config(detector), context(), TEXTS)
    assert result.ok and result.seconds > 0
    assert [(f.category, f.span) for f in result.findings] == [
        ("email", Span("messages[0].content", 9, 25)), ("codeword", Span("messages[0].content", 32, 40))]
    assert sample(metrics, "gateway_guardrail_webhook_calls_total", guardrail="detector", outcome="ok") == 1
    assert sample(metrics, "gateway_guardrail_webhook_duration_seconds_count", guardrail="detector") == 1


async def test_headers_and_credentials_are_sent_but_never_the_token(detector: DetectorServer, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_KEY", "s3cret")
    (tmp_path / "team").write_text("payments-key\n")
    webhook = config(detector, api_key=Credential(env="DETECTOR_KEY"),
                     headers=(("X-Team", "payments"), ("X-Api-Key", Credential(file=tmp_path / "team"))))
    async with running() as client:
        assert (await client.inspect(webhook, context(), TEXTS)).ok
    [call] = detector.calls
    assert call["headers"]["authorization"] == "Bearer s3cret"
    assert (call["headers"]["x-team"], call["headers"]["x-api-key"]) == ("payments", "payments-key")
    assert call["headers"]["x-request-id"] == "req_client"
    assert call["body"]["token"] == {"name": "checkout", "team": "payments"}


@pytest.mark.parametrize(("mode", "error", "detail"), [
    ("fail", CallError.HTTP_STATUS, "status 500"),
    ("garbage", CallError.INVALID_ANSWER, "not JSON"),
    ("badspan", CallError.INVALID_ANSWER, "0 <= start < end"),
    ("wrongversion", CallError.INVALID_ANSWER, "unsupported version"),
])
async def test_detector_faults_are_results_not_exceptions(detector: DetectorServer, mode: str, error: CallError,
                                                          detail: str, caplog: pytest.LogCaptureFixture) -> None:
    metrics = GatewayMetrics()
    async with running(metrics) as client:
        result = await client.inspect(config(detector, mode), context(), TEXTS)
    assert (result.error, result.findings) == (error, ())
    assert detail in result.detail
    assert sample(metrics, "gateway_guardrail_webhook_calls_total", guardrail="detector", outcome=error.value) == 1
    assert "jane@example.com" not in caplog.text  # logs never hold the texts


@pytest.mark.parametrize(("mode", "status", "for_good"), [("fail", 500, False), ("toolarge", 413, True),
                                                         ("garbage", None, False)])
async def test_a_detector_that_refuses_the_request_refuses_it_for_good(detector: DetectorServer, mode: str,
                                                                      status: int | None, for_good: bool) -> None:
    async with running() as client:
        result = await client.inspect(config(detector, mode), context(), TEXTS)
    assert (result.status, result.refused_for_good) == (status, for_good)


def test_only_a_4xx_but_408_and_429_is_for_good() -> None:
    assert [CallResult(error=CallError.HTTP_STATUS, status=s).refused_for_good for s in (400, 401, 408, 413, 429, 503)] \
        == [True, True, False, True, False, False]


async def test_a_slow_detector_costs_the_timeout_and_no_more(detector: DetectorServer) -> None:
    async with running() as client:
        started = asyncio.get_running_loop().time()
        result = await client.inspect(config(detector, "slow", timeout=0.2), context(), TEXTS)
        elapsed = asyncio.get_running_loop().time() - started
    assert result.error is CallError.TIMEOUT
    assert elapsed < 1.5  # well under the detector's 2 s: the call was cut at its timeout


async def test_an_unreachable_detector_is_a_connect_error() -> None:
    from sidecar.devtools.launcher import free_port
    async with running() as client:
        result = await client.inspect(WebhookConfig(url=f"http://127.0.0.1:{free_port()}/check"), context(), TEXTS)
    assert result.error is CallError.CONNECT


async def test_the_breaker_opens_and_then_the_detector_is_not_called(detector: DetectorServer) -> None:
    metrics = GatewayMetrics()
    webhook = config(detector, "fail", breaker=BreakerConfig(consecutive_failures=2, cooldown=30.0))
    async with running(metrics) as client:
        results = [await client.inspect(webhook, context(), TEXTS) for _ in range(5)]
    assert [r.error for r in results] == [CallError.HTTP_STATUS] * 2 + [CallError.BREAKER_OPEN] * 3
    assert len(detector.calls) == 2
    assert 25 < results[-1].retry_after <= 30 and results[-1].retry_after_seconds() in {29, 30}
    assert sample(metrics, "gateway_guardrail_webhook_calls_total", guardrail="detector", outcome="breaker_open") == 3


async def test_the_breaker_closes_after_a_successful_probe(detector: DetectorServer) -> None:
    now = [0.0]
    client = WebhookClient(clock=lambda: now[0])
    failing = config(detector, "fail", breaker=BreakerConfig(consecutive_failures=1, cooldown=5.0))
    async with contextlib.asynccontextmanager(lambda: client.session())():
        assert (await client.inspect(failing, context(), TEXTS)).error is CallError.HTTP_STATUS
        assert (await client.inspect(failing, context(), TEXTS)).error is CallError.BREAKER_OPEN
        now[0] = 6.0
        healthy = replace(failing, url=f"{detector.url}/check")
        assert (await client.inspect(healthy, context(), TEXTS)).ok
        assert client.breaker("detector", healthy).state.value == "closed"


async def test_a_dry_run_calls_but_moves_no_breaker(detector: DetectorServer) -> None:
    webhook = config(detector, "fail", breaker=BreakerConfig(consecutive_failures=1))
    async with running() as client:
        for _ in range(3):
            assert (await client.inspect(webhook, context(dry_run=True), TEXTS)).error is CallError.HTTP_STATUS
        assert client.breaker("detector", webhook).state.value == "closed"
    assert len(detector.calls) == 3 and detector.calls[0]["body"]["dry_run"] is True


async def test_max_connections_bounds_concurrent_calls(detector: DetectorServer) -> None:
    # One connection, two calls: the second waits for the first, and the wait counts in its timeout.
    webhook = config(detector, "slow?seconds=0.6", max_connections=1, timeout=1.0)
    async with running() as client:
        first, second = await asyncio.gather(client.inspect(webhook, context(), TEXTS),
                                             client.inspect(webhook, context(), TEXTS))
    assert first.ok and second.error is CallError.TIMEOUT
    sent = [call["at"] for call in detector.calls]
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.5  # sent only once the first call gave its connection back
