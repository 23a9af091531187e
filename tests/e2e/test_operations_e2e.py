"""Operations through the real Envoy: metrics and log lines, the pair's readiness, hot reload under load."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.core.tokens import hash_token
from sidecar.devtools.launcher import Stack
from sidecar.policy.loader import load_policy
from tests.configmap import ConfigMapVolume
from tests.e2e.stacks import REPO, stack_settings, start_stack
from tests.e2e.support import DEMO_TOKEN, chat_body, parse_sse, post_chat


def metric_samples(sidecar_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(sidecar_url + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def sidecar_log_lines(stack: Stack) -> list[dict[str, Any]]:
    lines = []
    for raw in (stack.workdir / "stack.log").read_text(encoding="utf-8", errors="replace").splitlines():
        if raw.startswith("{"):
            entry = json.loads(raw)
            if str(entry.get("logger", "")).startswith("sidecar"):
                lines.append(entry)
    return lines


async def test_metrics_and_log_lines_after_real_requests(gateway: Stack) -> None:
    before = metric_samples(gateway.sidecar_url)
    marker = "private-words-7f3a"  # message content: must never reach a log line
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, gateway.base_url, chat_body(f"echo: {marker}"))
        assert status == 200, raw
        ok_id = headers["x-request-id"]
        status, headers, raw = await post_chat(session, gateway.base_url, chat_body(f"echo: {marker}", stream=True))
        assert status == 200 and parse_sse(raw)[-1] == "[DONE]"
        stream_id = headers["x-request-id"]
        status, headers, _ = await post_chat(session, gateway.base_url, chat_body(marker), token="cgt_nobody")
        assert status == 401
        denied_id = headers["x-request-id"]
        status, _, _ = await post_chat(session, gateway.base_url, chat_body(marker, model=f"gpt-{marker}"))
        assert status == 404
    after = metric_samples(gateway.sidecar_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gateway_requests_total", model="gpt-4", status="200", token="demo") == 2
    assert delta("gateway_requests_total", model="unknown", status="401", token="unknown") == 1
    assert delta("gateway_requests_total", model="unknown", status="404", token="demo") == 1
    assert delta("gateway_request_duration_seconds_count", model="gpt-4") == 2
    assert delta("gateway_time_to_first_token_seconds_count", model="gpt-4") == 2
    assert delta("gateway_tokens_total", model="gpt-4", token="demo", kind="prompt") > 0
    assert delta("gateway_tokens_total", model="gpt-4", token="demo", kind="completion") > 0
    assert delta("gateway_callout_duration_seconds_count") == 4
    policy_version = load_policy(gateway.settings.policies_dir).version
    assert value(after, "gateway_policy_info", version=policy_version) == 1
    # Label values are bounded: no client-chosen model name, no raw token, no request id.
    exposition = "".join(f"{k}{v}" for k in after for v in k[1])
    assert marker not in exposition and "cgt_nobody" not in exposition and ok_id not in exposition

    lines = sidecar_log_lines(gateway)
    by_request = {(line["msg"], line.get("request_id")): line for line in lines}
    decision = by_request["decision", ok_id]
    expected = {"logger": "sidecar.decision", "level": "info", "token": "demo", "team": "demo-team", "model": "gpt-4",
                "status": 200, "code": None, "deployments": ["demo/demo-gpt-4"], "stream": False,
                "policy_version": policy_version}
    assert {key: decision[key] for key in expected} == expected
    assert isinstance(decision["decision_ms"], float) and decision["decision_ms"] >= 0
    access = by_request["request", stream_id]
    assert (access["token"], access["model"], access["status"], access["stream"]) == ("demo", "gpt-4", 200, True)
    assert access["completion_tokens"] > 0 and access["latency_ms"] >= access["ttfb_ms"] > 0
    denial = by_request["decision", denied_id]
    assert (denial["status"], denial["code"], denial["token"]) == (401, "invalid_api_key", None)
    assert ("request", denied_id) not in by_request  # denied requests are never forwarded
    text = json.dumps(lines)
    assert marker not in text.replace(f"gpt-{marker}", "")  # only the (cut) requested model name, never content
    assert DEMO_TOKEN not in text and "cgt_nobody" not in text


async def test_guardrail_findings_are_counted_and_logged_without_the_value(demo_gateway: Stack) -> None:
    before = metric_samples(demo_gateway.sidecar_url)
    email = "jane.doe.7f3a@example.com"
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, demo_gateway.base_url, chat_body(f"Mail me at {email}"))
    assert status == 400, raw
    assert json.loads(raw)["error"]["type"] == "guardrail_block"
    after = metric_samples(demo_gateway.sidecar_url)
    labels = {"guardrail": "pii-checker", "category": "email", "action": "block"}
    assert value(after, "gateway_guardrail_findings_total", **labels) - value(
        before, "gateway_guardrail_findings_total", **labels) == 1
    assert value(after, "gateway_requests_total", model="gpt-4", status="400", token="demo") - value(
        before, "gateway_requests_total", model="gpt-4", status="400", token="demo") == 1
    lines = sidecar_log_lines(demo_gateway)
    (decision,) = [line for line in lines if line["msg"] == "decision"
                   and line["request_id"] == headers["x-request-id"]]
    assert (decision["status"], decision["code"], decision["model"]) == (400, "guardrail_block", "gpt-4")
    assert email not in json.dumps(lines)


async def test_envoy_healthz_reports_the_pair(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.base_url + "/healthz") as response:
            assert response.status == 200
            body = await response.json()
        async with session.post(gateway.base_url + "/healthz") as response:
            assert response.status == 404  # only GET is the probe; nothing else is routed
        async with session.get(gateway.base_url + "/metrics") as response:
            assert response.status == 404  # metrics stay on the sidecar's internal port
    assert body == {"status": "ready", "policy_version": load_policy(gateway.settings.policies_dir).version}


@pytest.fixture
def lone_envoy(tmp_path: Path) -> Iterator[Stack]:
    """Envoy with no sidecar behind it."""
    stack = Stack(stack_settings(tmp_path), tmp_path, with_demo_provider=False)
    stack.start_envoy()
    yield stack
    stack.stop()


async def test_envoy_healthz_fails_without_the_sidecar(lone_envoy: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.get(lone_envoy.base_url + "/healthz") as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "upstream_unavailable"


# ---- hot reload under load ---------------------------------------------------------------------

MODELS = (REPO / "policies" / "models.yaml").read_text(encoding="utf-8")
TOKENS = (REPO / "policies" / "tokens.yaml").read_text(encoding="utf-8")
SWAPS, REQUESTS, CONCURRENCY = 20, 200, 8


def good_policy(generation: int) -> dict[str, str]:
    # Each good version adds its own token, so every version is really different.
    extra = f"  rotating-{generation}:\n    sha256: {hash_token(f'cgt_rotating_{generation:04d}')}\n"
    return {"models.yaml": MODELS, "tokens.yaml": TOKENS + extra}


def bad_policy(generation: int) -> dict[str, str]:
    broken = [TOKENS + f"    colour: blue-{generation}\n",  # unknown key
              TOKENS + "  demo:\n    sha256: dup\n",  # duplicate key
              TOKENS + "   : [\n"][generation % 3]  # not YAML
    return {"models.yaml": MODELS, "tokens.yaml": broken}


@pytest.fixture
def reload_stack(tmp_path: Path) -> Iterator[tuple[Stack, ConfigMapVolume]]:
    volume = ConfigMapVolume(tmp_path / "policies")
    volume.publish(good_policy(0))
    stack = start_stack(tmp_path, stack_settings(volume.folder, policy_poll_seconds=0.02))
    yield stack, volume
    stack.stop()


async def _wait_for(condition: Any, what: str) -> None:
    for _ in range(1000):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_reloads_good_and_bad_under_load_fail_no_request(
        reload_stack: tuple[Stack, ConfigMapVolume]) -> None:
    stack, volume = reload_stack
    statuses: list[int] = []
    versions_seen: list[str] = []
    rejections = [0]

    async def client(session: aiohttp.ClientSession, gate: asyncio.Semaphore, index: int) -> None:
        # Traffic and swaps interleave for sure: request i starts after swap i*SWAPS//REQUESTS landed,
        # and each swap waits for its share of finished requests.
        await _wait_for(lambda: len(versions_seen) + rejections[0] >= index * SWAPS // REQUESTS, "swap")
        async with gate:
            status, _, raw = await post_chat(session, stack.base_url, chat_body(f"n{index}", stream=index % 2 == 0))
            statuses.append(status)
            assert status == 200, raw

    async def swapper() -> None:
        for generation in range(1, SWAPS + 1):
            await _wait_for(lambda g=generation: len(statuses) >= (g - 1) * REQUESTS // (SWAPS + 2), "traffic")
            failures = value(metric_samples(stack.sidecar_url), "gateway_policy_reloads_total", outcome="failure")
            if generation % 2:
                volume.publish(good_policy(generation))
                expected = load_policy(volume.folder).version
                await _wait_for(lambda v=expected: _readyz(stack)["policy_version"] == v, "reload")
                versions_seen.append(expected)
            else:
                volume.publish(bad_policy(generation))
                await _wait_for(lambda f=failures: value(metric_samples(stack.sidecar_url),
                                                         "gateway_policy_reloads_total", outcome="failure") > f,
                                "rejection")
                rejections[0] += 1

    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(swapper(), *(client(session, gate, i) for i in range(REQUESTS)))
    assert statuses == [200] * REQUESTS
    assert len(set(versions_seen)) == SWAPS // 2
    samples = metric_samples(stack.sidecar_url)
    assert value(samples, "gateway_policy_reloads_total", outcome="success") == SWAPS // 2
    assert value(samples, "gateway_policy_reloads_total", outcome="failure") == SWAPS // 2
    assert value(samples, "gateway_requests_total", model="gpt-4", status="200", token="demo") == REQUESTS
    # The last change was a bad one: the last good version still serves, and the rejection shows.
    assert value(samples, "gateway_policy_reload_errors") >= 1
    assert _readyz(stack)["policy_version"] == versions_seen[-1]
    assert value(samples, "gateway_policy_info", version=versions_seen[-1]) == 1
    rejected = [line for line in sidecar_log_lines(stack) if line["msg"] == "policy change rejected"]
    assert len(rejected) == SWAPS // 2


def _readyz(stack: Stack) -> dict[str, Any]:
    with urllib.request.urlopen(stack.sidecar_url + "/readyz", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result
