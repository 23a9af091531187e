"""Several sidecar workers on one port: any worker forwards what any other decided, and any worker's
/metrics counts what all of them did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.cli.workers import METRICS_DIR_ENV, WORKERS_ENV
from sidecar.devtools.launcher import Stack
from tests.e2e.quota_support import call, write_quota_policies
from tests.e2e.stacks import stack_settings, start_stack, write_test_policies
from tests.e2e.support import chat_body, parse_sse, post_chat
from tests.e2e.workers_support import Series, scrape, series_of, wait_for_scrape, wait_listening
from tests.redis_server import RedisServer


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("workers")
    settings = stack_settings(write_test_policies(workdir / "policies"))
    stack = Stack(settings, workdir, log=(workdir / "stack.log").open("wb"), extra_env={WORKERS_ENV: "2"})
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def test_requests_succeed_across_two_workers(two_workers: Stack) -> None:
    parent = two_workers.processes["sidecar"].pid
    assert len(children_of(parent)) == 1  # worker 0 is the parent itself
    async with aiohttp.ClientSession() as session:
        plain = await asyncio.gather(*(post_chat(session, two_workers.base_url, chat_body(f"n{i}"))
                                       for i in range(16)))
        streamed = await asyncio.gather(*(post_chat(session, two_workers.base_url, chat_body("s", stream=True))
                                          for _ in range(8)))
    assert [status for status, _, _ in plain] == [200] * 16
    assert {json.loads(raw)["choices"][0]["message"]["content"] for _, _, raw in plain} == {
        f"Hello from the demo provider. You said: n{i}" for i in range(16)}
    for status, _, raw in streamed:
        assert status == 200
        assert parse_sse(raw)[-1] == "[DONE]"


def test_stopping_the_sidecar_stops_its_workers(tmp_path: Path) -> None:
    settings = stack_settings(write_test_policies(tmp_path / "policies"))
    stack = Stack(settings, tmp_path, log=(tmp_path / "stack.log").open("wb"), extra_env={WORKERS_ENV: "3"})
    try:
        stack.start()
        workers = children_of(stack.processes["sidecar"].pid)
        assert len(workers) == 2
        metrics_dirs = {environ_of(pid).get(METRICS_DIR_ENV) for pid in workers}
        (metrics_dir,) = metrics_dirs
        assert metrics_dir and Path(metrics_dir).is_dir()
    finally:
        stack.stop()
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert not Path(metrics_dir).exists()  # the parent removes the workers' metric files


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


# ---- one /metrics for all workers ------------------------------------------------------------

REQUESTS = 30  # allowed requests of the `shape` token, spread over the workers
DENIED = 6  # requests with a token the policy does not know: counted by the callout's worker
# Scrapes through each of Envoy's scrape listener and the sidecar's TCP port. Each scrape is a new
# connection, which the kernel gives to either worker (SO_REUSEPORT), while Envoy's few connections
# to the sidecar may well all be one worker's: with a registry per worker, at least one of a dozen
# scrapes on the port shows the other worker's own counts (a chance of 2**-12 that none does).
SCRAPES = 12


@pytest.fixture(scope="module")
def redis_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two workers sharing quota counters in a real redis-server (several workers need its store)."""
    workdir = tmp_path_factory.mktemp("metrics-workers")
    redis = RedisServer(workdir / "redis")
    redis.start()
    try:
        policies = write_quota_policies(workdir / "policies", f"{{backend: redis, redis_url: '{redis.url}', timeout: 5s}}")
        stack = start_stack(workdir, stack_settings(policies), extra_env={WORKERS_ENV: "2"})
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        redis.stop()


async def test_every_scrape_counts_the_requests_of_every_worker(redis_workers: Stack) -> None:
    stack = redis_workers
    assert len(children_of(stack.processes["sidecar"].pid)) == 1
    assert await wait_listening(stack.settings.sidecar_port, 2) == 2
    allowed = await asyncio.gather(*(call(stack.base_url, "shape", chat_body(f"m{i}")) for i in range(REQUESTS)))
    denied = await asyncio.gather(*(call(stack.base_url, "nobody") for _ in range(DENIED)))
    assert [status for status, _, _ in allowed] == [200] * REQUESTS
    assert [(status, body["error"]["code"]) for status, _, body in denied] == [(401, "invalid_api_key")] * DENIED

    def complete(found: Series) -> bool:
        return requests_of(found, "shape") == REQUESTS and requests_of(found, "unknown") == DENIED

    # An exchange is counted when it ends, which can be just after the client has its answer.
    await wait_for_scrape(stack.sidecar_url, complete)
    version = await policy_version(stack)
    for url in [stack.metrics_url, stack.sidecar_url] * SCRAPES:  # each lands on whichever worker the kernel picks
        found = series_of(await scrape(url))
        assert requests_of(found, "shape") == REQUESTS, url
        assert found.get(("gateway_requests_total", (("model", "gpt-4"), ("status", "200"), ("token", "shape")))) \
            == REQUESTS
        assert requests_of(found, "unknown") == DENIED
        assert found[("gateway_request_duration_seconds_count", (("model", "gpt-4"),))] == REQUESTS
        # The same series as one process has: breaker states by deployment, the policy version as info.
        assert {labels: value for (name, labels), value in found.items() if name == "gateway_breaker_state"} == {
            (("deployment", "demo/demo-gpt-4"), ("gateway_breaker_state", state)): float(state == "closed")
            for state in ("closed", "half_open", "open")}
        assert {labels: value for (name, labels), value in found.items() if name == "gateway_policy_info"} == {
            (("version", version),): 1.0}
        assert found[("gateway_policy_reload_errors", ())] == 0
        assert found[("gateway_policy_loaded_timestamp_seconds", ())] > 0
        ratio = found[("gateway_quota_used_ratio", (("kind", "tokens_per_day"), ("limit", "shape.tokens_per_day"),
                                                    ("scope", "token=shape")))]
        assert 0 < ratio < 1
        assert not [key for key in found if ("pid",) in [label[:1] for label in key[1]]]  # no per-worker series


def requests_of(found: Series, token: str) -> float:
    """gateway_requests_total summed over model and status, for one token name."""
    return sum(value for (name, labels), value in found.items()
               if name == "gateway_requests_total" and ("token", token) in labels)


async def policy_version(stack: Stack) -> str:
    async with aiohttp.ClientSession() as session, session.get(stack.sidecar_url + "/readyz") as response:
        assert response.status == 200
        version: str = (await response.json())["policy_version"]
    return version
