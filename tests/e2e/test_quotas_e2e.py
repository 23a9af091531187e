"""Every limit kind through the real Envoy, once per counter store (memory file and Redis)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import openai
import pytest

from sidecar.devtools.launcher import Stack
from tests.e2e.quota_support import (
    PRICE_COMPLETION,
    PRICE_PROMPT,
    ZONE,
    call,
    demo_usage,
    estimate,
    token,
    write_quota_policies,
)
from tests.e2e.stacks import stack_settings, start_stack
from tests.e2e.support import CHAT_PATH, chat_body, parse_sse
from tests.redis_server import RedisServer


@pytest.fixture(scope="module", params=["memory", "redis"])
def quota_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"quotas-{request.param}")
    redis = None
    if request.param == "redis":
        redis = RedisServer(workdir / "redis")
        redis.start()
        store = f"{{backend: redis, redis_url: '{redis.url}', timeout: 5s}}"
    else:
        store = f"{{backend: memory, state_dir: '{workdir / 'state'}', flush_interval: 1h}}"  # only the SIGTERM flush counts
    stack = start_stack(workdir, stack_settings(write_quota_policies(workdir / "policies", store)))
    yield stack
    stack.stop()
    if redis is not None:
        redis.stop()


def assert_denied(status: int, body: dict[str, object], error_type: str, code: str) -> dict[str, str]:
    assert status == 429, body
    error = body["error"]
    assert isinstance(error, dict)
    assert (error["type"], error["code"], error["param"]) == (error_type, code, None)
    return error


async def test_requests_per_minute(quota_gateway: Stack) -> None:
    results = [await call(quota_gateway.base_url, "rpm") for _ in range(3)]
    assert [r[0] for r in results] == [200, 200, 429]
    first, second, (status, headers, body) = results
    assert first[1]["x-ratelimit-limit-requests"] == "2"
    assert (first[1]["x-ratelimit-remaining-requests"], second[1]["x-ratelimit-remaining-requests"]) == ("1", "0")
    assert first[1]["x-ratelimit-reset-requests"].endswith("s")
    error = assert_denied(status, body, "rate_limit_exceeded", "requests_per_minute")
    assert error["message"].startswith("Rate limit reached: requests per minute for token 'rpm' (limit 'rpm')")
    assert 28 <= int(headers["Retry-After"]) <= 30  # one request refills in 60 s / 2
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert headers["x-request-id"]
    async with aiohttp.ClientSession() as session, session.get(quota_gateway.sidecar_url + "/metrics") as response:
        metrics = await response.text()
    assert 'gateway_limit_denials_total{limit="rpm.requests_per_minute"} 1.0' in metrics


async def test_tokens_per_minute_reserves_the_estimate_and_settles_usage(quota_gateway: Stack) -> None:
    body = chat_body(max_tokens=600)
    status, headers, first = await call(quota_gateway.base_url, "tpm", body)
    assert status == 200
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == str(1000 - estimate(body, 600))
    assert first["usage"]["total_tokens"] < 50
    # Only settlement makes room for a second 600-token reservation.
    status, headers, _ = await call(quota_gateway.base_url, "tpm", body)
    assert status == 200
    assert int(headers["x-ratelimit-remaining-tokens"]) >= 1000 - first["usage"]["total_tokens"] - estimate(body, 600)
    status, headers, denied = await call(quota_gateway.base_url, "tpm", chat_body(max_tokens=990))
    error = assert_denied(status, denied, "rate_limit_exceeded", "tokens_per_minute")
    assert "tokens per minute for token 'tpm'" in error["message"]
    assert int(headers["Retry-After"]) >= 1
    assert headers["x-ratelimit-limit-tokens"] == "1000"


async def _limit_denials(gateway: Stack, limit: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(gateway.sidecar_url + "/metrics") as response:
        metrics = await response.text()
    prefix = f'gateway_limit_denials_total{{limit="{limit}"}} '
    return next((float(line[len(prefix):]) for line in metrics.splitlines() if line.startswith(prefix)), 0.0)


async def test_a_request_larger_than_the_limit_itself(quota_gateway: Stack) -> None:
    before = await _limit_denials(quota_gateway, "tpm.tokens_per_minute")
    status, headers, body = await call(quota_gateway.base_url, "tpm", chat_body(max_tokens=5000))
    error = assert_denied(status, body, "rate_limit_exceeded", "tokens_per_minute")
    assert error["message"].endswith(" The request is larger than the limit itself; reduce max_tokens or the prompt.")
    assert ", used " not in error["message"]  # refused before the store is asked: what is used is not known
    assert "Retry-After" not in headers  # waiting would not help
    assert headers["x-should-retry"] == "false"  # nor would retrying at once
    assert await _limit_denials(quota_gateway, "tpm.tokens_per_minute") == before + 1  # counted like any denial
    # The official SDK with its default retries (2) takes the header's word: one request, not three.
    async with openai.AsyncOpenAI(base_url=quota_gateway.base_url + "/api/client/v1", api_key=token("tpm")) as sdk:
        with pytest.raises(openai.RateLimitError) as raised:
            await sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hello"}],
                                              max_tokens=5000)
    assert raised.value.code == "tokens_per_minute"
    assert await _limit_denials(quota_gateway, "tpm.tokens_per_minute") == before + 2


async def test_concurrent_requests_and_slots_always_released(quota_gateway: Stack) -> None:
    url = quota_gateway.base_url
    async with aiohttp.ClientSession() as session, session.post(
            url + CHAT_PATH, json=chat_body("slow: a b c", stream=True),
            headers={"Authorization": f"Bearer {token('conc')}"}) as stream:
        assert stream.status == 200
        await stream.content.readuntil(b"\n\n")
        status, headers, body = await call(url, "conc")
        error = assert_denied(status, body, "rate_limit_exceeded", "concurrent_requests")
        assert "concurrent requests for token 'conc'" in error["message"]
        # The truth: the slot frees when the stream ends, at the latest when its lease (the
        # deployment's total timeout + 60 s) runs out; a confirmed stream holds the full lease.
        assert int(headers["Retry-After"]) > 60
        assert "at the latest in" in error["message"]
        assert parse_sse(await stream.read())  # the rest of the stream; its end frees the slot
    assert (await call(url, "conc"))[0] == 200
    status, _, body = await call(url, "conc", {"model": "broken", "messages": [{"role": "user", "content": "x"}]})
    assert status == 502, body  # the provider failed: the slot is still released
    assert (await call(url, "conc"))[0] == 200
    async with aiohttp.ClientSession() as session, session.post(
            url + CHAT_PATH, json=chat_body("slow: " + " ".join(["w"] * 30), stream=True),
            headers={"Authorization": f"Bearer {token('conc')}"}) as stream:
        await stream.content.readuntil(b"\n\n")
        # Leaving the block disconnects mid-stream.
    assert await eventually_admitted(url, "conc")


async def eventually_admitted(url: str, name: str) -> bool:
    for _ in range(20):
        if (await call(url, name))[0] == 200:
            return True
        await asyncio.sleep(0.05)
    return False


def local_midnight_after_now() -> datetime:
    zone = ZoneInfo(ZONE)
    today = datetime.now(zone).date() + timedelta(days=1)
    return datetime(today.year, today.month, today.day, tzinfo=zone)


async def exhaust(url: str, name: str, body: dict[str, object], most: int = 20) -> tuple[int, list[int], tuple[int, Any, Any]]:
    """Sends `body` until denied; the admitted requests' real usage, and the denial."""
    used: list[int] = []
    for _ in range(most):
        status, headers, answer = await call(url, name, body)
        if status != 200:
            return len(used), used, (status, headers, answer)
        used.append(answer["usage"]["total_tokens"])
    raise AssertionError(f"never denied after {most} requests")


async def test_tokens_per_day_quota(quota_gateway: Stack) -> None:
    body = chat_body(max_tokens=150)
    _, used, (status, headers, denied) = await exhaust(quota_gateway.base_url, "day", body)
    # Settled usage, not the 159-token estimates, is what fills the quota.
    assert sum(used[:-1]) + estimate(body, 150) <= 200 < sum(used) + estimate(body, 150)
    error = assert_denied(status, denied, "insufficient_quota", "tokens_per_day")
    assert error["message"] == (
        f"Quota exceeded: tokens per day for token 'day' (limit 'day'): limit 200, used {sum(used)}, "
        f"requested {estimate(body, 150)}. It resets at {local_midnight_after_now().isoformat()}.")
    assert int(headers["Retry-After"]) > 3600  # it is about noon in the policy's zone
    assert headers["x-ratelimit-limit-tokens"] == "200"
    assert headers["x-ratelimit-remaining-tokens"] == str(200 - sum(used))
    assert headers["x-ratelimit-reset-tokens"].endswith("s") and "h" in headers["x-ratelimit-reset-tokens"]


async def test_tokens_per_month_quota(quota_gateway: Stack) -> None:
    body = chat_body(max_tokens=150)
    _, used, (status, headers, denied) = await exhaust(quota_gateway.base_url, "month", body)
    error = assert_denied(status, denied, "insufficient_quota", "tokens_per_month")
    now = datetime.now(ZoneInfo(ZONE))
    first = (now.date().replace(day=1) + timedelta(days=32)).replace(day=1)
    assert error["message"].endswith(f"It resets at {first.isoformat()}T00:00:00{now.strftime('%z')[:3]}:00.")
    assert f"used {sum(used)}," in error["message"]
    assert int(headers["Retry-After"]) > 3600


async def test_spend_per_day_budget(quota_gateway: Stack) -> None:
    body = chat_body(max_tokens=20)
    prompt = estimate(body, 0)
    spent = 0
    for _ in range(20):
        status, _, answer = await call(quota_gateway.base_url, "spend", body)
        if status != 200:
            break
        usage = answer["usage"]
        spent += round(usage["prompt_tokens"] * PRICE_PROMPT + usage["completion_tokens"] * PRICE_COMPLETION)
    reserve = round(prompt * PRICE_PROMPT + 20 * PRICE_COMPLETION)
    assert spent + reserve > 200_000 >= spent - 20_000 + reserve  # the last admitted one still fitted
    error = assert_denied(status, answer, "insufficient_quota", "spend_per_day")
    used_usd = f"${spent / 1e6:.6f}".rstrip("0").rstrip(".")
    assert f"spend per day (USD) for token 'spend' (limit 'spend'): limit $0.2, used {used_usd}," in error["message"]


async def test_shadow_limits_report_but_admit(quota_gateway: Stack) -> None:
    results = [await call(quota_gateway.base_url, "shadow") for _ in range(3)]
    assert [r[0] for r in results] == [200, 200, 200]
    assert [r[1].get("x-gateway-quota-shadow") for r in results] == [
        None, "shadow.requests_per_minute", "shadow.requests_per_minute"]
    assert "x-ratelimit-limit-requests" not in results[-1][1]  # not enforced, so not advertised


async def test_a_team_limit_is_shared_by_the_team_tokens(quota_gateway: Stack) -> None:
    statuses = [(await call(quota_gateway.base_url, name))[0] for name in ("blue1", "blue2", "blue1")]
    assert statuses == [200, 200, 200]
    status, _, body = await call(quota_gateway.base_url, "blue2")
    assert "requests per minute for team 'blue' (limit 'team')" in assert_denied(
        status, body, "rate_limit_exceeded", "requests_per_minute")["message"]
    assert (await call(quota_gateway.base_url, "free"))[0] == 200  # no limit applies to this token


async def test_a_concurrent_burst_admits_exactly_the_limit(quota_gateway: Stack) -> None:
    results = await asyncio.gather(*(call(quota_gateway.base_url, "burst") for _ in range(20)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200] * 5 + [429] * 15


@pytest.mark.parametrize("client_asks", [False, True])
async def test_streamed_usage_is_settled(quota_gateway: Stack, client_asks: bool) -> None:
    name = "stream_usage" if client_asks else "stream"
    options = {"stream_options": {"include_usage": True}} if client_asks else {}
    body = chat_body("echo: one two three four", stream=True, max_tokens=500, **options)
    status, headers, raw = await call(quota_gateway.base_url, name, body)
    assert status == 200
    chunks = [json.loads(p) for p in parse_sse(raw)[:-1]]
    usage_chunks = [c for c in chunks if c.get("usage")]
    if client_asks:
        assert [c["usage"]["total_tokens"] for c in usage_chunks] == [demo_usage(body)]
    else:
        assert usage_chunks == [] and all("usage" not in c for c in chunks)
    assert headers["x-ratelimit-remaining-tokens"] == str(100_000 - estimate(body, 500))
    probe = chat_body(max_tokens=100)
    status, headers, _ = await call(quota_gateway.base_url, name, probe)
    assert headers["x-ratelimit-remaining-tokens"] == str(100_000 - demo_usage(body) - estimate(probe, 100))


async def test_an_aborted_stream_settles_what_was_used(quota_gateway: Stack) -> None:
    words = " ".join(["word"] * 20)
    body = chat_body("slow: " + words, stream=True, max_tokens=5000)
    async with aiohttp.ClientSession() as session, session.post(
            quota_gateway.base_url + CHAT_PATH, json=body,
            headers={"Authorization": f"Bearer {token('abort')}"}) as stream:
        await stream.content.readuntil(b"\n\n")
        await stream.content.readuntil(b"\n\n")
    probe = chat_body(max_tokens=10)
    probes = 0
    for _ in range(20):  # the sidecar notices the disconnect shortly after
        status, headers, answer = await call(quota_gateway.base_url, "abort", probe)
        assert status == 200
        level = 100_000 - int(headers["x-ratelimit-remaining-tokens"]) - estimate(probe, 10) - probes
        if level < 5000:
            break
        probes += answer["usage"]["total_tokens"]
        await asyncio.sleep(0.05)
    prompt = estimate(body, 0)
    assert prompt <= level <= prompt + math.ceil(len(words) / 4)


async def test_usage_survives_a_sidecar_restart(quota_gateway: Stack) -> None:
    body = chat_body(max_tokens=40)
    status, _, answer = await call(quota_gateway.base_url, "restart", body)
    assert status == 200
    # SIGTERM: the sidecar drains, settles and (memory store) writes its state file before exiting.
    quota_gateway.stop_process("sidecar")
    quota_gateway.start_sidecar()
    probe = chat_body(max_tokens=10)
    status, headers, _ = await call(quota_gateway.base_url, "restart", probe)
    assert status == 200
    used = answer["usage"]["total_tokens"]
    assert headers["x-ratelimit-remaining-tokens"] == str(100_000 - used - estimate(probe, 10))


@pytest.mark.parametrize("tool_calls", [1, True, {"id": "x"}])
async def test_malformed_tool_calls_on_a_user_message_is_a_400(quota_gateway: Stack, tool_calls: object) -> None:
    # The quota estimate reads every message's tool_calls; these crashed the callout: Envoy's 503.
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi", "tool_calls": tool_calls}]}
    status, headers, error = await call(quota_gateway.base_url, "shape", body)
    assert status == 400, error
    assert error == {"error": {"message": "'messages[0].tool_calls' must be an array", "type": "invalid_request_error",
                               "code": "invalid_type", "param": "messages[0].tool_calls"}}
    assert headers["x-request-id"].startswith("req_")
    assert (await call(quota_gateway.base_url, "shape"))[0] == 200
