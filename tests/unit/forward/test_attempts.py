"""The forwarding path in-process (no Envoy): what finishers and breakers see when a provider fails.

The callout is called the way Envoy calls it, and its signed decision is handed to the forwarding
endpoint, so these tests exercise the same code as the end-to-end ones and can look inside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from sidecar.app import init_app
from sidecar.appkeys import BREAKERS, EXTENSIONS, HTTP_CLIENT, POLICY_STORE
from sidecar.callout.handoff import DECISION_HEADER, Decision
from sidecar.cli.main import DEMO_TOKEN
from sidecar.core.endpoints import CHAT_PATH
from sidecar.core.kinds import Outcome
from sidecar.core.routes import BreakerConfig, Deployment, ProviderType
from sidecar.core.tokens import hash_token
from sidecar.devtools.faulty_control import COUNTS, FAULTS, Fault
from sidecar.devtools.faulty_provider import init_faulty_provider
from sidecar.forward.attempts import Attempts
from sidecar.forward.breaker import BreakerBoard
from sidecar.forward.exchange import Exchange
from sidecar.policy.loader import load_policy
from sidecar.providers.registry import provider_for
from sidecar.settings import Settings

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


class Harness:
    def __init__(self, client: TestClient[web.Request, web.Application], faulty: TestServer) -> None:
        self.client, self.faulty = client, faulty
        self.finished: list[Exchange] = []
        self.policies = Path()

    def fault(self, model: str, mode: str, **options: Any) -> None:
        self.faulty.app[FAULTS][model] = Fault(mode, **options)

    async def chat(self, model: str, stream: bool) -> tuple[int, bytes]:
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
        auth = {"Authorization": f"Bearer {DEMO_TOKEN}"}
        async with self.client.post("/authz" + CHAT_PATH, json=body, headers=auth) as decided:
            if decided.status != 200:
                return (503 if decided.status == 460 else decided.status), await decided.read()
            decision = decided.headers[DECISION_HEADER]
        async with self.client.post(CHAT_PATH, json=body, headers={DECISION_HEADER: decision}) as response:
            return response.status, await response.read()


@pytest.fixture
async def harness(tmp_path: Path, aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> Harness:
    faulty = await aiohttp_server(init_faulty_provider())
    (tmp_path / "p.yaml").write_text(f"""
tokens:
  demo: {{sha256: {hash_token(DEMO_TOKEN)}}}
providers:
  p:
    type: openai
    base_url: {faulty.make_url("/v1")}
    timeouts: {{first_byte: 500ms, idle: 200ms}}
    breaker: {{consecutive_failures: 1, cooldown: 30s}}
  quick:
    type: openai
    base_url: {faulty.make_url("/v1")}
    timeouts: {{idle: 500ms}}
    breaker: {{consecutive_failures: 1, cooldown: 100ms}}
models:
  probed: {{deployments: [{{provider: quick, model: probed}}]}}
  m: {{deployments: [{{provider: p, model: m}}]}}
  pair: {{deployments: [{{provider: p, model: first}}, {{provider: p, model: second}}]}}
""", encoding="utf-8")
    app = init_app(Settings(policies_dir=tmp_path, keepalive_seconds=0.1))
    harness = Harness(await aiohttp_client(app), faulty)
    harness.policies = tmp_path

    async def remember(exchange: Exchange) -> None:
        harness.finished.append(exchange)

    app[EXTENSIONS].finishers.append(remember)
    return harness


async def test_usage_so_far_is_accounted_when_the_stream_breaks(harness: Harness) -> None:
    harness.fault("m", "reset", after=3)
    status, raw = await harness.chat("m", stream=True)
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    [exchange] = harness.finished
    assert exchange.completion_chars == len("reply from m")
    assert exchange.usage is None, "the provider never sent its usage chunk"
    assert (exchange.status, exchange.error) == (200, "stream_broken")
    assert exchange.fault is not None and exchange.fault.code == "stream_broken"
    assert harness.client.app[BREAKERS].breaker_states() == {"p/m": "open"}


async def test_a_stalled_stream_counts_as_a_timeout_and_opens_the_breaker(harness: Harness) -> None:
    harness.fault("m", "hang", after=1)
    status, raw = await harness.chat("m", stream=True)
    assert status == 200 and b'"provider_timeout"' in raw and raw.endswith(b"data: [DONE]\n\n")
    assert harness.finished[0].completion_chars == len("reply")
    status, raw = await harness.chat("m", stream=True)
    assert status == 503 and b"circuit_breaker_open" in raw


async def test_a_finished_stream_has_usage_and_keeps_the_breaker_closed(harness: Harness) -> None:
    status, raw = await harness.chat("m", stream=True)
    assert status == 200 and b'"error"' not in raw
    [exchange] = harness.finished
    assert exchange.usage is not None and exchange.usage.completion_tokens == 6
    assert harness.client.app[BREAKERS].breaker_states() == {"p/m": "closed"}


async def test_a_provider_4xx_does_not_trip_the_breaker(harness: Harness) -> None:
    harness.fault("m", "status", status=400)
    for _ in range(3):
        assert (await harness.chat("m", stream=False))[0] == 400
    assert harness.client.app[BREAKERS].breaker_states() == {"p/m": "closed"}


async def test_each_attempt_is_booked_on_its_own_breaker(harness: Harness) -> None:
    harness.fault("first", "status", status=500)
    status, _ = await harness.chat("pair", stream=False)
    assert status == 200
    assert harness.finished[0].deployment.name == "p/second"
    assert harness.client.app[BREAKERS].breaker_states() == {"p/first": "open", "p/second": "closed"}
    status, _ = await harness.chat("pair", stream=True)
    assert status == 200
    assert harness.faulty.app[COUNTS] == {"first": 1, "second": 2}, "the open breaker is skipped"


async def test_breaker_state_survives_a_policy_reload(harness: Harness) -> None:
    harness.fault("m", "status", status=500)
    assert (await harness.chat("m", stream=False))[0] == 502
    policy_file = harness.policies / "p.yaml"
    policy_file.write_text(policy_file.read_text().replace("cooldown: 30s", "cooldown: 45s"), encoding="utf-8")
    store = harness.client.app[POLICY_STORE]
    old = store.current.version
    store.swap(load_policy(harness.policies))
    assert store.current.version != old
    status, raw = await harness.chat("m", stream=False)
    assert status == 503 and b"circuit_breaker_open" in raw
    board = harness.client.app[BREAKERS]
    assert board.get("p/m", store.current.models.routes["m"].deployments[0].breaker).config.cooldown == 45.0


async def test_a_streamed_probe_closes_the_breaker_when_the_stream_starts(harness: Harness) -> None:
    harness.fault("probed", "status", status=500, times=1)
    assert (await harness.chat("probed", stream=True))[0] == 502
    board = harness.client.app[BREAKERS]
    assert board.breaker_states()["quick/probed"] == "open"
    await asyncio.sleep(0.15)
    harness.fault("probed", "hang", after=2, times=1)  # two words, then silence past the 500ms idle timeout
    stream = asyncio.create_task(harness.chat("probed", stream=True))
    while board.breaker_states()["quick/probed"] != "closed":
        assert not stream.done(), "closed while the probe's stream still runs"
        await asyncio.sleep(0.01)
    assert (await harness.chat("probed", stream=False))[0] == 200, "no longer limited to one probe"
    status, raw = await stream
    assert status == 200 and b'"provider_timeout"' in raw
    assert board.breaker_states()["quick/probed"] == "open", "the rest of the stream is booked too"


async def test_a_cancelled_probe_gives_its_slot_back(aiohttp_server: ServerFactory) -> None:
    faulty = await aiohttp_server(init_faulty_provider())
    faulty.app[FAULTS]["m"] = Fault("slow", delay=5.0)
    clock = [0.0]
    board = BreakerBoard(lambda: clock[0])
    deployment = Deployment(name="p/m", provider=ProviderType.OPENAI, base_url=str(faulty.make_url("/v1")), upstream_model="m",
                            breaker=BreakerConfig(consecutive_failures=1, cooldown=1.0, half_open_probes=1))
    breaker = board.get(deployment.name, deployment.breaker)
    permit = breaker.acquire()
    assert permit is not None
    permit.record(Outcome.CONNECT)
    clock[0] = 2.0  # cool-down over: the next attempt is the one probe
    app = web.Application()
    app[BREAKERS] = board
    async with aiohttp.ClientSession() as session:
        app[HTTP_CLIENT] = session
        decision = Decision("req_1", "demo", None, "m", ("p/m",), False, False, "v1")
        exchange = Exchange(decision, None, deployment, provider_for(deployment), 0.0)  # type: ignore[arg-type]
        attempts = Attempts(make_mocked_request("POST", "/", app=app), exchange, {"messages": []}, [deployment])

        async def use() -> None:
            async with attempts:
                pass

        task = asyncio.create_task(use())
        while not faulty.app[COUNTS].get("m"):
            await asyncio.sleep(0.01)
        assert breaker.acquire() is None, "the probe slot is taken"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert breaker.state.value == "half_open"
    assert breaker.acquire() is not None, "cancelled: the slot is free again"
