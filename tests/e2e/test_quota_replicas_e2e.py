"""Redis-shared quotas: two gateway replicas enforce one limit, and Redis outages fail open or closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.devtools.launcher import Stack
from sidecar.features.quotas.memory_backend import STATE_FILE
from tests.e2e.quota_support import call, estimate, write_quota_policies
from tests.e2e.stacks import stack_settings, start_stack
from tests.e2e.support import chat_body, log_entries
from tests.redis_server import RedisServer


def redis_gateway(workdir: Path, redis: RedisServer, replicas: int) -> list[Stack]:
    policies = write_quota_policies(workdir / "policies", f"{{backend: redis, redis_url: '{redis.url}', timeout: 5s}}")
    stacks: list[Stack] = []
    try:
        for index in range(replicas):
            (workdir / f"replica{index}").mkdir()
            stacks.append(start_stack(workdir / f"replica{index}", stack_settings(policies)))
    except Exception:
        for stack in stacks:
            stack.stop()
        raise
    return stacks


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def test_two_sidecars_sharing_redis_admit_exactly_the_limit(tmp_path: Path, redis: RedisServer) -> None:
    first, second = redis_gateway(tmp_path, redis, replicas=2)
    try:
        results = await asyncio.gather(*(call(stack.base_url, "burst")
                                         for _ in range(10) for stack in (first, second)))
        assert sorted(r[0] for r in results) == [200] * 5 + [429] * 15
        status, headers, _ = await call(first.base_url, "burst")
        assert (status, headers["x-ratelimit-remaining-requests"]) == (429, "0")
    finally:
        first.stop()
        second.stop()


async def test_a_redis_outage_fails_open_or_closed_per_limit(tmp_path: Path, redis: RedisServer) -> None:
    (stack,) = redis_gateway(tmp_path, redis, replicas=1)
    try:
        assert (await call(stack.base_url, "open"))[0] == 200
        assert (await call(stack.base_url, "closed"))[0] == 200
        redis.stop()
        status, headers, _ = await call(stack.base_url, "open")
        assert status == 200
        assert headers["x-gateway-quota-degraded"] == "store-unavailable"
        status, headers, body = await call(stack.base_url, "closed")
        assert status == 503
        assert body["error"]["code"] == "quota_backend_unavailable"
        assert body["error"]["type"] == "service_unavailable"
        assert headers["Retry-After"] == "1"
        assert (await call(stack.base_url, "free"))[0] == 200  # no limit applies: Redis is not asked
        assert await log_entries(tmp_path / "replica0", "quota store unavailable: failing open")
        assert await log_entries(tmp_path / "replica0", "quota store unavailable: failing closed")
        redis.start()  # back on the same port: the sidecar reconnects by itself
        status, headers, _ = await call(stack.base_url, "closed")
        assert status == 200 and "x-gateway-quota-degraded" not in headers
    finally:
        stack.stop()


async def test_usage_survives_a_crash_after_the_flush_interval(tmp_path: Path) -> None:
    state = tmp_path / "state"
    policies = write_quota_policies(
        tmp_path / "policies", f"{{backend: memory, state_dir: '{state}', flush_interval: 50ms}}")
    (tmp_path / "gw").mkdir()
    stack = start_stack(tmp_path / "gw", stack_settings(policies))
    try:
        status, _, answer = await call(stack.base_url, "restart", chat_body(max_tokens=40))
        assert status == 200
        used = answer["usage"]["total_tokens"]
        for _ in range(40):  # the documented bound: one flush interval after the settlement
            if saved_usage(state / STATE_FILE, "token=restart") == used:
                break
            await asyncio.sleep(0.05)
        crashed = stack.processes.pop("sidecar")
        crashed.kill()  # SIGKILL: no shutdown flush
        crashed.wait()
        stack.start_sidecar()
        probe = chat_body(max_tokens=10)
        status, headers, _ = await call(stack.base_url, "restart", probe)
        assert status == 200
        assert headers["x-ratelimit-remaining-tokens"] == str(100_000 - used - estimate(probe, 10))
    finally:
        stack.stop()


def saved_usage(path: Path, scope: str) -> float | None:
    try:
        windows = json.loads(path.read_text())["windows"]
    except (OSError, ValueError):
        return None
    return next((value[0] for key, value in windows.items() if scope in key), None)
