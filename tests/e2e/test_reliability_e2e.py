"""Breaker, fallbacks, timeouts and provider errors through the real Envoy, against the faulty provider.

Each test uses its own model keys (and so its own deployments and breakers), so tests sharing the
module's stack cannot trip each other's breakers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest

from sidecar.devtools.launcher import Stack, free_port
from tests.e2e.faults import FaultyProvider, chat, error_of, start_gateway, write_policies
from tests.e2e.support import parse_sse

DEPLOYMENT = "x-gateway-deployment"


def policy(faulty: str, dead: str) -> str:
    timeouts = "timeouts: {connect: 300ms, first_byte: 600ms, idle: 400ms, total: 5s}"
    models = {
        "fallback-5xx": ["fast: fb5xx-a", "backup: fb5xx-b"],
        "fallback-429": ["fast: fb429-a", "backup: fb429-b"],
        "fallback-down": ["dead: fbdown-a", "backup: fbdown-b"],
        "fallback-all-fail": ["fast: fbfail-a", "backup: fbfail-b"],
        "opens": ["fast: opens"],
        "opens-skip": ["fast: skip-a", "backup: skip-b"],
        "half-open": ["probe: half"],
        "half-open-fails": ["probe: half-fails"],
        "half-open-bounded": ["probe: bounded"],
        "rate": ["rated: rate"],
        "lenient": ["lenient: lenient"],
        "inherits": ["plain: inherits"],
        "errors": ["fast: errors"],
        "ttfb": ["fast: ttfb", "backup: ttfb-b"],
        "hang": ["fast: hang"],
        "keepalive": ["patient: keepalive"],
        "midstream": ["fast: mid-a", "backup: mid-b"],
        "weights": ["backup: w-heavy", "backup: w-light"],
    }
    lines = ["models:"]
    for key, deployments in models.items():
        lines.append(f"  {key}:\n    deployments:")
        for entry in deployments:
            provider, model = entry.split(": ")
            lines.append(f"      - {{provider: {provider}, model: {model}}}")
    lines[-2:] = [
        "      - {provider: backup, model: w-heavy, priority: 0, weight: 1000}",
        "      - {provider: backup, model: w-light, priority: 0, weight: 0.001}",
    ]
    return f"""
breaker: {{consecutive_failures: 3, cooldown: 30s}}
providers:
  fast:
    type: openai
    base_url: {faulty}/v1
    {timeouts}
    breaker: {{consecutive_failures: 2}}
  backup:
    type: openai
    base_url: {faulty}/v1
    {timeouts}
    breaker: {{enabled: false}}
  dead:
    type: openai
    base_url: {dead}/v1
    {timeouts}
  probe:
    type: openai
    base_url: {faulty}/v1
    {timeouts}
    breaker: {{consecutive_failures: 2, cooldown: 500ms, half_open_probes: 1}}
  rated:
    type: openai
    base_url: {faulty}/v1
    {timeouts}
    breaker: {{consecutive_failures: 50, error_rate: 0.5, window: 1m, min_requests: 4}}
  lenient:
    type: openai
    base_url: {faulty}/v1
    {timeouts}
    breaker: {{consecutive_failures: 1, failure_on: [connect, timeout]}}
  plain:
    type: openai
    base_url: {faulty}/v1
    {timeouts}
  patient:
    type: openai
    base_url: {faulty}/v1
    timeouts: {{connect: 300ms, first_byte: 3s, idle: 2s, total: 10s}}
""" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("reliability")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    stack = start_gateway(workdir, write_policies(workdir / "policies", policy(faulty.url, dead)))
    yield stack
    stack.stop()


def completion_text(raw: bytes) -> str:
    return str(json.loads(raw)["choices"][0]["message"]["content"])


def stream_parts(raw: bytes) -> tuple[str, list[dict[str, object]]]:
    """(text relayed, error objects) of an SSE body that must end with `data: [DONE]`."""
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]", raw[-200:]
    events = [json.loads(p) for p in payloads[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    return text, [e["error"] for e in events if "error" in e]


# ---- fallbacks ----------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "mode", "status"), [
    ("fallback-5xx", "status", 500),
    ("fallback-429", "status", 429),
])
async def test_fallback_on_provider_error(gw: Stack, faulty: FaultyProvider, model: str, mode: str,
                                          status: int) -> None:
    first = model.replace("fallback", "fb").replace("-", "") + "-a"
    faulty.set(first, mode, status=status)
    for stream in (False, True):
        code, headers, raw = await chat(gw, model, stream=stream)
        assert code == 200, raw
        assert headers[DEPLOYMENT] == f"backup/{first[:-2]}-b"
    assert faulty.count(first) == 2


async def test_fallback_when_the_first_deployment_is_down(gw: Stack, faulty: FaultyProvider) -> None:
    code, headers, raw = await chat(gw, "fallback-down")
    assert code == 200, raw
    assert headers[DEPLOYMENT] == "backup/fbdown-b"
    assert completion_text(raw) == "reply from fbdown-b one two three"


async def test_when_every_deployment_fails_the_last_error_is_relayed(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("fbfail-a", "status", status=500)
    faulty.set("fbfail-b", "status", status=503)
    code, headers, raw = await chat(gw, "fallback-all-fail")
    assert code == 502
    assert headers[DEPLOYMENT] == "backup/fbfail-b"
    assert error_of(raw)["message"] == "Injected failure 503 for fbfail-b"
    assert (faulty.count("fbfail-a"), faulty.count("fbfail-b")) == (1, 1)


async def test_no_fallback_after_the_first_byte(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("mid-a", "reset", after=2)
    code, headers, raw = await chat(gw, "midstream", stream=True)
    assert code == 200
    assert headers[DEPLOYMENT] == "fast/mid-a"
    text, errors = stream_parts(raw)
    assert text == "reply from"
    assert [e["code"] for e in errors] == ["stream_broken"]
    assert faulty.count("mid-b") == 0, "the stream had started: no second deployment"


async def test_weights_pick_the_heavy_deployment_first(gw: Stack, faulty: FaultyProvider) -> None:
    served = [(await chat(gw, "weights"))[1][DEPLOYMENT] for _ in range(5)]
    # weight 1000 vs 0.001: the light one comes first about once in a million requests.
    assert served == ["backup/w-heavy"] * 5


# ---- breaker transitions ------------------------------------------------------------------

async def test_breaker_opens_and_answers_503_with_retry_after(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("opens", "status", status=500)
    for _ in range(2):
        code, _, raw = await chat(gw, "opens")
        assert code == 502 and error_of(raw)["type"] == "server_error"
    for stream in (False, True):
        code, headers, raw = await chat(gw, "opens", stream=stream)
        assert code == 503
        assert headers["Content-Type"].startswith("application/json")
        assert 1 <= int(headers["Retry-After"]) <= 30
        error = error_of(raw)
        assert (error["type"], error["code"]) == ("circuit_breaker_open", "circuit_breaker_open")
        assert "'opens'" in error["message"] and "fast/opens" in error["message"]
        assert headers["x-request-id"]
    assert faulty.count("opens") == 2, "an open breaker sends nothing to the provider"
    async with aiohttp.ClientSession() as session, session.get(gw.sidecar_url + "/metrics") as response:
        metrics = await response.text()
    assert 'gateway_breaker_state{deployment="fast/opens",gateway_breaker_state="open"} 1.0' in metrics


async def test_open_breaker_is_skipped_for_the_next_deployment(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("skip-a", "status", status=502)
    for _ in range(4):
        code, headers, _ = await chat(gw, "opens-skip")
        assert code == 200 and headers[DEPLOYMENT] == "backup/skip-b"
    assert faulty.count("skip-a") == 2
    assert faulty.count("skip-b") == 4


async def test_half_open_probe_success_closes(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("half", "status", status=500)
    for _ in range(2):
        assert (await chat(gw, "half-open"))[0] == 502
    faulty.set("half", "ok")
    await asyncio.sleep(0.6)  # the 500ms cool-down
    for _ in range(3):
        code, _, raw = await chat(gw, "half-open")
        assert code == 200, raw
    assert faulty.count("half") == 5


async def test_half_open_probe_failure_reopens(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("half-fails", "status", status=500)
    for _ in range(2):
        assert (await chat(gw, "half-open-fails"))[0] == 502
    await asyncio.sleep(0.6)
    assert (await chat(gw, "half-open-fails"))[0] == 502, "the probe reaches the provider and fails"
    code, headers, _ = await chat(gw, "half-open-fails")
    assert code == 503 and int(headers["Retry-After"]) == 1
    assert faulty.count("half-fails") == 3


async def test_half_open_lets_a_bounded_number_of_probes_through(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("bounded", "status", status=500)
    for _ in range(2):
        assert (await chat(gw, "half-open-bounded"))[0] == 502
    faulty.set("bounded", "slow", delay=0.4)
    await asyncio.sleep(0.6)
    probe = asyncio.create_task(chat(gw, "half-open-bounded"))
    while faulty.count("bounded") < 3:
        await asyncio.sleep(0.02)
    code, _, raw = await chat(gw, "half-open-bounded")
    assert code == 503 and error_of(raw)["code"] == "circuit_breaker_open", "one probe at a time"
    assert (await probe)[0] == 200
    assert (await chat(gw, "half-open-bounded"))[0] == 200, "the probe succeeded: closed"
    assert faulty.count("bounded") == 4


async def test_error_rate_over_the_window_opens(gw: Stack, faulty: FaultyProvider) -> None:
    statuses = []
    for fails in (False, True, False, True, False):
        faulty.set("rate", "status" if fails else "ok", status=500)
        statuses.append((await chat(gw, "rate"))[0])
    assert statuses == [200, 502, 200, 502, 503], "2 of 4 failed (50%) with 4 requests: open"


async def test_failure_kinds_are_configurable(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("lenient", "status", status=500)
    statuses = [(await chat(gw, "lenient"))[0] for _ in range(3)]
    assert statuses == [502, 502, 502], "5xx does not count for this provider"


async def test_providers_inherit_the_global_breaker_default(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("inherits", "status", status=500)
    statuses = [(await chat(gw, "inherits"))[0] for _ in range(4)]
    assert statuses == [502, 502, 502, 503], "global consecutive_failures: 3"
