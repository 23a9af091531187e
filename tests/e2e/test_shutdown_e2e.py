"""SIGTERM: the sidecar turns not-ready, refuses new requests, finishes or cleanly ends in-flight streams."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.core.endpoints import CHAT_PATH
from sidecar.devtools.launcher import Stack, free_port, wait_http
from tests.e2e.faults import FaultyProvider, chat, error_of, start_gateway, write_policies
from tests.e2e.stacks import REPO, stack_settings, start_stack, write_test_policies
from tests.e2e.support import auth, chat_body, parse_sse

POLICY = """
providers:
  p:
    type: openai
    base_url: {url}/v1
models:
  short: {{deployments: [{{provider: p, model: short}}]}}
  long: {{deployments: [{{provider: p, model: long}}]}}
"""


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[FaultyProvider]:
    provider = FaultyProvider(tmp_path)
    yield provider
    provider.stop()


@pytest.fixture
def gw(tmp_path: Path, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path / "stack"
    stack = start_gateway(workdir, write_policies(workdir / "policies", POLICY.format(url=faulty.url)),
                          drain_seconds=1)
    yield stack
    stack.stop()


async def readyz_status(stack: Stack) -> int:
    async with aiohttp.ClientSession() as session, session.get(stack.sidecar_url + "/readyz") as response:
        return response.status


async def test_sigterm_drains_then_ends_streams_cleanly(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("short", "drip", delay=0.1)  # about 0.6s: finishes within the 1s grace period
    faulty.set("long", "drip", delay=0.5)  # about 3s: still running when the grace period ends
    short = asyncio.create_task(chat(gw, "short", stream=True))
    long = asyncio.create_task(chat(gw, "long", stream=True))
    while faulty.count("short") + faulty.count("long") < 2:
        await asyncio.sleep(0.02)
    assert await readyz_status(gw) == 200
    sidecar = gw.processes["sidecar"]
    sidecar.send_signal(signal.SIGTERM)
    while await readyz_status(gw) != 503:
        await asyncio.sleep(0.02)

    status, headers, raw = await chat(gw, "short")
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert error_of(raw)["code"] == "gateway_shutting_down"

    status, _, raw = await short
    assert status == 200
    assert parse_sse(raw)[-1] == "[DONE]"
    assert b'"error"' not in raw, "a stream that ends within the grace period is not cut"

    status, _, raw = await long
    assert status == 200
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]"
    last = json.loads(payloads[-2])
    assert last["error"]["code"] == "gateway_shutting_down"
    assert len(payloads) < 10, "cut short, not finished"

    assert await asyncio.to_thread(sidecar.wait, 10) == 0


# ---- stopping the whole stack (`make run`'s Ctrl-C, Stack.stop): the pod's order ------------------

SHORT_TEXT = "slow: one two three"  # about 0.6 s at the demo provider's 0.2 s per word: within the drain
LONG_TEXT = "slow: " + " ".join(f"w{n}" for n in range(40))  # about 8 s: ended by the drain


@pytest.fixture
def demo_stack(tmp_path: Path) -> Iterator[Stack]:
    stack = start_stack(tmp_path, stack_settings(write_test_policies(tmp_path / "policies"), drain_seconds=1))
    yield stack
    stack.stop()


async def started_stream(session: aiohttp.ClientSession, base_url: str, text: str) -> aiohttp.ClientResponse:
    """A stream through Envoy whose first event (the role chunk) has arrived: it is in flight."""
    response = await session.post(base_url + CHAT_PATH, json=chat_body(text, stream=True), headers=auth())
    assert response.status == 200
    first = await response.content.readuntil(b"\n\n")
    assert first.startswith(b"data: ")
    return response


async def rest_of(response: aiohttp.ClientResponse) -> list[str]:
    """The stream's remaining events, read to its end (the connection's, if it is cut)."""
    try:
        raw = await response.content.read()
    except aiohttp.ClientPayloadError:  # cut mid-stream
        raw = b""
    response.release()
    return parse_sse(raw) if raw.endswith(b"\n\n") else [raw.decode(errors="replace")]


def assert_ended_normally(payloads: list[str]) -> None:
    assert payloads[-1] == "[DONE]", payloads
    assert not any('"error"' in p for p in payloads), payloads
    assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"


def assert_ended_by_the_drain(payloads: list[str]) -> None:
    assert payloads[-1] == "[DONE]", payloads
    assert json.loads(payloads[-2])["error"]["code"] == "gateway_shutting_down"


async def test_stopping_the_stack_lets_streams_in_flight_end_cleanly(demo_stack: Stack) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        short = await started_stream(session, demo_stack.base_url, SHORT_TEXT)
        long = await started_stream(session, demo_stack.base_url, LONG_TEXT)
        stopping = asyncio.create_task(asyncio.to_thread(demo_stack.stop))
        assert_ended_normally(await rest_of(short))
        assert_ended_by_the_drain(await rest_of(long))
        await stopping
    assert demo_stack.processes == {}


def run_env(tmp_path: Path) -> dict[str, str]:
    ports = ("GATEWAY_PORT", "GATEWAY_SIDECAR_PORT", "GATEWAY_ADMIN_PORT", "GATEWAY_DEMO_PROVIDER_PORT",
             "GATEWAY_STATUS_PORT", "GATEWAY_METRICS_PORT")
    return {**os.environ, **{name: str(free_port()) for name in ports}, "GATEWAY_DRAIN_SECONDS": "1",
            "GATEWAY_POLICIES": str(REPO / "policies"), "GATEWAY_STATE_DIR": str(tmp_path / "state")}


async def test_ctrl_c_on_run_lets_a_stream_in_flight_end(tmp_path: Path) -> None:
    env = run_env(tmp_path)
    base_url = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    with (tmp_path / "run.log").open("wb") as log:
        # Its own process group, as a shell gives a foreground job: Ctrl-C is SIGINT to the group.
        run = subprocess.Popen([sys.executable, "-m", "sidecar", "run"], env=env, cwd=tmp_path, stdout=log,
                               stderr=subprocess.STDOUT, process_group=0)
        try:
            await asyncio.to_thread(wait_http, base_url + "/healthz", 60.0, run)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                short = await started_stream(session, base_url, SHORT_TEXT)
                long = await started_stream(session, base_url, LONG_TEXT)
                os.killpg(run.pid, signal.SIGINT)
                assert_ended_normally(await rest_of(short))
                assert_ended_by_the_drain(await rest_of(long))
            assert await asyncio.to_thread(run.wait, 30) == 0
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    output = (tmp_path / "run.log").read_text(errors="replace")
    assert "Traceback" not in output
    assert "stopping: requests in flight get up to 1 s" in output
