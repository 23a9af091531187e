"""The status page and the scrape listener against the real stack (Envoy, sidecar, demo provider)."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from sidecar.core.tokens import hash_token
from sidecar.devtools.launcher import Stack
from tests.e2e.stacks import REPO, stack_settings, start_stack, write_test_policies
from tests.e2e.status_support import QUOTA, get, limit_of, status_json
from tests.e2e.support import DEMO_TOKEN, RESTRICTED_TOKEN, chat_body, post_chat

SECRET_TEXT = "the quarterly numbers are 4411"
ADMIN = "status-admin-secret-for-the-test"


async def test_the_page_shows_traffic_denials_and_quota_used(status_gateway: Stack) -> None:
    base, page = status_gateway.base_url, status_gateway.status_url
    # The stack is shared with the browser test: figures are compared with what was there before.
    before = limit_of(status_json(page), "demo", "daily.tokens_per_day")["used"]
    requests_before = status_json(page)["traffic"]["requests"]
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_chat(session, base, chat_body(SECRET_TEXT, max_tokens=20))
        assert status == 200, body
        used = before + json.loads(body)["usage"]["total_tokens"]
        status, headers, _ = await post_chat(session, base, chat_body("hi"), token=RESTRICTED_TOKEN)
        assert status == 403
        denied_id = headers["x-request-id"]
        status, _, _ = await post_chat(session, base, chat_body("write to alice@example.com"))
        assert status == 400  # the pii-checker guardrail
    for _ in range(100):  # the quota is settled just after the answer
        current = status_json(page)
        if limit_of(current, "demo", "daily.tokens_per_day")["used"] == used:
            break
        await asyncio.sleep(0.05)
    daily = limit_of(current, "demo", "daily.tokens_per_day")
    assert (daily["used"], daily["left"], daily["cap"]) == (used, QUOTA - used, QUOTA)
    assert daily["scope"] == "token=demo" and daily["resets_at"]
    denied = next(d for d in current["denied"] if d["request_id"] == denied_id)
    assert (denied["token"], denied["model"], denied["status"]) == ("restricted", "gpt-4", 403)
    assert denied["code"] and set(denied) == {"time", "request_id", "token", "model", "status", "code"}
    traffic = current["traffic"]
    assert traffic["requests"] >= requests_before + 3 and traffic["denied"] >= 2
    assert traffic["denials"][denied["code"]] >= 1
    assert traffic["latency_p50"] is not None and traffic["ttft_p50"] is not None
    assert sum(p["requests"] for p in traffic["minutes"]) == traffic["requests"] and len(traffic["minutes"]) == 15
    guardrails = {g["key"]: g for g in current["guardrails"]}
    assert guardrails["pii-checker"]["findings_last_hour"] >= 1
    assert guardrails["pii-checker"]["action"] == "block"
    model = next(m for m in current["models"] if m["key"] == "gpt-4")
    assert model["deployments"][0]["breaker"] == "closed"
    assert current["policy"]["rejected_version"] is None


def test_the_page_never_shows_a_token_its_hash_or_content(status_gateway: Stack) -> None:
    for path in ("/", "/status.json"):
        status, _, body = get(status_gateway.status_url + path)
        assert status == 200
        text = body.decode()
        for secret in (DEMO_TOKEN, hash_token(DEMO_TOKEN), RESTRICTED_TOKEN, hash_token(RESTRICTED_TOKEN),
                       SECRET_TEXT, "alice@example.com"):
            assert secret not in text, path


def test_the_html_page_is_self_contained(status_gateway: Stack) -> None:
    status, headers, body = get(status_gateway.status_url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    html = body.decode()
    assert 'src="static/status.js"' in html and "http://" not in html and "https://" not in html
    for asset in ("/static/status.js", "/static/status.css"):
        assert get(status_gateway.status_url + asset)[0] == 200


@pytest.mark.parametrize("path", ["/status.json", "/static/status.js", "/metrics", "/stats/prometheus", "/readyz"])
def test_the_client_listener_routes_neither_status_nor_metrics(status_gateway: Stack, path: str) -> None:
    status, _, body = get(status_gateway.base_url + path)
    assert status == 404, body
    assert json.loads(body)["error"]["code"] == "unknown_url"


def test_the_scrape_listener_serves_sidecar_and_envoy_metrics_only(status_gateway: Stack) -> None:
    status, _, body = get(status_gateway.metrics_url + "/metrics")
    assert status == 200 and b"gateway_requests_total" in body and b"gateway_quota_backend_errors_total" in body
    status, _, body = get(status_gateway.metrics_url + "/stats/prometheus")
    assert status == 200 and b"envoy_cluster_upstream_rq" in body
    for path in ("/stats", "/config_dump", "/status.json", "/api/client/v1/chat/completions", "/quitquitquit"):
        assert get(status_gateway.metrics_url + path)[0] == 404, path
    request_post = get(status_gateway.metrics_url + "/metrics", {"X-HTTP-Method-Override": "POST"})
    assert request_post[0] == 200  # an override header changes nothing: only the real method counts


def test_every_envoy_series_the_dashboard_reads_exists_in_a_real_scrape(status_gateway: Stack) -> None:
    dashboard = (REPO / "deploy" / "monitoring" / "grafana-dashboard.json").read_text(encoding="utf-8")
    wanted = re.findall(r"(envoy_[a-z_]+)\{([^}]*)\}", dashboard.replace('\\"', '"'))
    assert wanted
    status, _, body = get(status_gateway.metrics_url + "/stats/prometheus")
    assert status == 200
    scraped = body.decode()
    for name, selector in wanted:
        labels = re.findall(r'(envoy_[a-z_]+)="([^"$]*)"', selector)
        lines = [line for line in scraped.splitlines() if line.startswith(name + "{")]
        assert lines, f"{name} not in Envoy's /stats/prometheus"
        for label, value in labels:
            assert any(f'{label}="{value}"' in line for line in lines), (name, label, value)
    for label in re.findall(r"by \((envoy_[a-z_]+)\)", dashboard):
        assert f"{label}=" in scraped, label


def test_a_status_token_is_required_by_the_running_sidecar(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The admin token reaches the sidecar process through its environment (GATEWAY_STATUS_TOKEN).
    workdir = tmp_path_factory.mktemp("status-token")
    stack = start_stack(workdir, stack_settings(write_test_policies(workdir / "policies"), status_token=ADMIN))
    try:
        for path in ("/", "/status.json"):
            status, headers, body = get(stack.status_url + path)
            assert (status, json.loads(body)["error"]["code"]) == (401, "invalid_api_key"), path
            assert headers["WWW-Authenticate"].startswith("Basic ")
            status, _, body = get(stack.status_url + path, {"Authorization": f"Bearer {ADMIN}"})
            assert status == 200, body[:200]
        assert get(stack.status_url + "/status.json", {"Authorization": "Bearer wrong"})[0] == 401
    finally:
        stack.stop()
