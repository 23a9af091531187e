"""What quotas tell Prometheus: calendar quota levels, quota-store errors, and spend at policy prices."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from sidecar.core.errors import ServiceUnavailable
from sidecar.core.types import Usage
from sidecar.features.observability.install import record_exchange
from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.features.quotas.memory_backend import MemoryBackend
from sidecar.features.quotas.service import QuotaService
from tests.unit.features.quotas.test_service import PROMPT, Down, decide, exchange, policy


async def test_calendar_quota_levels_are_exported_per_scope(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    service = QuotaService(MemoryBackend(None), metrics=metrics)
    current = policy(tmp_path, "    m: {tokens_per_month: 1000, requests_per_minute: 50}")
    await decide(service, current)
    get = metrics.registry.get_sample_value
    ratio = get("gateway_quota_used_ratio", {"limit": "m.tokens_per_month", "kind": "tokens_per_month",
                                             "scope": "token=t"})
    assert ratio == pytest.approx((PROMPT + 100) / 1000)
    # Per-minute rates refill by themselves: only calendar quotas are exported.
    assert get("gateway_quota_used_ratio", {"limit": "m.requests_per_minute", "kind": "requests_per_minute",
                                            "scope": "token=t"}) is None
    await decide(service, current, dry_run=True)  # `explain` looks without reporting
    assert get("gateway_quota_used_ratio", {"limit": "m.tokens_per_month", "kind": "tokens_per_month",
                                            "scope": "token=t"}) == ratio


@pytest.mark.parametrize(("on_error", "mode"), [("open", "fail_open"), ("closed", "fail_closed")])
async def test_quota_store_errors_are_counted_by_what_the_gateway_did(tmp_path: Path, on_error: str,
                                                                      mode: str) -> None:
    metrics = GatewayMetrics()
    service = QuotaService(Down(), metrics=metrics)  # type: ignore[arg-type]
    current = policy(tmp_path, f"    r: {{requests_per_minute: 5, on_backend_error: {on_error}}}")
    with contextlib.suppress(ServiceUnavailable):  # closed: the 503 itself is tested in test_service
        await decide(service, current)
    assert metrics.registry.get_sample_value("gateway_quota_backend_errors_total", {"mode": mode}) == 1


async def test_spend_is_counted_at_the_policy_prices(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    service = QuotaService(MemoryBackend(None))
    check = await decide(service, policy(tmp_path, "    m: {tokens_per_month: 100000}"))
    record_exchange(metrics, exchange(check, usage=Usage(prompt_tokens=1000, completion_tokens=500)))
    # USD per 1M tokens: 10 for the prompt, 20 for the completion.
    spent = metrics.registry.get_sample_value("gateway_spend_usd_total", {"model": "gpt-4", "token": "t"})
    assert spent == pytest.approx(1000 * 10 / 1e6 + 500 * 20 / 1e6)
