"""The recording methods features call, and per-app registries."""

from __future__ import annotations

from sidecar.features.observability.metrics import GatewayMetrics


def test_recording_methods_for_guardrails_limits_and_breaker() -> None:
    metrics = GatewayMetrics()
    metrics.guardrail_finding("pii", "email", "mask")
    metrics.guardrail_finding("pii", "email", "mask")
    metrics.limit_denied("team-daily-tokens")
    metrics.breaker_state("openai/gpt-4o", "open")
    get = metrics.registry.get_sample_value
    assert get("gateway_guardrail_findings_total", {"guardrail": "pii", "category": "email", "action": "mask"}) == 2
    assert get("gateway_limit_denials_total", {"limit": "team-daily-tokens"}) == 1
    assert get("gateway_breaker_state", {"deployment": "openai/gpt-4o", "gateway_breaker_state": "open"}) == 1
    assert get("gateway_breaker_state", {"deployment": "openai/gpt-4o", "gateway_breaker_state": "closed"}) == 0
    metrics.breaker_state("openai/gpt-4o", "half_open")
    assert get("gateway_breaker_state", {"deployment": "openai/gpt-4o", "gateway_breaker_state": "open"}) == 0


def test_requests_without_a_known_token_or_model_are_labelled_unknown() -> None:
    metrics = GatewayMetrics()
    metrics.request(None, 401, None)
    metrics.exchange("gpt-4", "demo", 1.5, 0.2, 10, 0)
    get = metrics.registry.get_sample_value
    assert get("gateway_requests_total", {"model": "unknown", "status": "401", "token": "unknown"}) == 1
    assert get("gateway_tokens_total", {"model": "gpt-4", "token": "demo", "kind": "prompt"}) == 10
    assert get("gateway_tokens_total", {"model": "gpt-4", "token": "demo", "kind": "completion"}) is None
    assert get("gateway_time_to_first_token_seconds_count", {"model": "gpt-4"}) == 1


def test_each_app_has_its_own_registry() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.limit_denied("x")
    assert second.registry.get_sample_value("gateway_limit_denials_total", {"limit": "x"}) is None
    assert b"gateway_limit_denials_total" in first.render()


def test_policy_version_and_reload_outcomes() -> None:
    metrics = GatewayMetrics()
    metrics.policy_loaded("aaa", 100.0)
    metrics.reload(ok=False, errors=3)
    get = metrics.registry.get_sample_value
    assert get("gateway_policy_info", {"version": "aaa"}) == 1
    assert get("gateway_policy_reload_errors", {}) == 3
    metrics.reload(ok=True)
    metrics.policy_loaded("bbb", 200.0)
    assert get("gateway_policy_info", {"version": "aaa"}) is None
    assert get("gateway_policy_info", {"version": "bbb"}) == 1
    assert get("gateway_policy_reload_errors", {}) == 0
    assert get("gateway_policy_reloads_total", {"outcome": "failure"}) == 1
    assert get("gateway_policy_reloads_total", {"outcome": "success"}) == 1
    assert get("gateway_policy_loaded_timestamp_seconds", {}) == 200.0


def test_remembered_children_count_like_labels_and_keep_series_apart() -> None:
    metrics = GatewayMetrics()
    for status in (200, 200, 429):
        metrics.request("gpt-4", status, "demo")
    metrics.request("gpt-4", 200, "other")  # e.g. a token added by a reload: its own series
    metrics.request(None, 200, None)
    metrics.exchange("gpt-4", "demo", 0.2, None, 5, 7)
    metrics.exchange("gpt-4", "demo", 0.3, None, 5, 0)
    metrics.spent("gpt-4", "demo", 0.5)
    metrics.spent("gpt-4", "demo", 0.25)
    get = metrics.registry.get_sample_value
    assert get("gateway_requests_total", {"model": "gpt-4", "status": "200", "token": "demo"}) == 2
    assert get("gateway_requests_total", {"model": "gpt-4", "status": "429", "token": "demo"}) == 1
    assert get("gateway_requests_total", {"model": "gpt-4", "status": "200", "token": "other"}) == 1
    assert get("gateway_requests_total", {"model": "unknown", "status": "200", "token": "unknown"}) == 1
    assert get("gateway_request_duration_seconds_count", {"model": "gpt-4"}) == 2
    assert get("gateway_request_duration_seconds_sum", {"model": "gpt-4"}) == 0.5
    assert get("gateway_tokens_total", {"model": "gpt-4", "token": "demo", "kind": "prompt"}) == 10
    assert get("gateway_tokens_total", {"model": "gpt-4", "token": "demo", "kind": "completion"}) == 7
    assert get("gateway_spend_usd_total", {"model": "gpt-4", "token": "demo"}) == 0.75
    # Nothing recorded, no series: a first time to first byte has not been seen.
    assert get("gateway_time_to_first_token_seconds_count", {"model": "gpt-4"}) is None
    assert b'gateway_requests_total{model="gpt-4",status="200",token="demo"} 2.0' in metrics.render()
