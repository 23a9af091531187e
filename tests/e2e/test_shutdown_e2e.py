"""SIGTERM: the sidecar turns not-ready, refuses new requests, finishes or cleanly ends in-flight streams."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.devtools.launcher import Stack
from tests.e2e.faults import FaultyProvider, chat, error_of, start_gateway, write_policies
from tests.e2e.support import parse_sse

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
