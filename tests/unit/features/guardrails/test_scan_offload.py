"""The callout's input scan of a large body runs in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest
from aiohttp import web

from sidecar.callout.pipeline import Check
from sidecar.core.errors import GuardrailBlocked
from sidecar.features.guardrails.install import OFFLOAD_BODY_BYTES, ScanOffload
from sidecar.policy.loader import load_policy
from tests.e2e.stacks import REPO


@pytest.mark.parametrize(("size", "on_loop"), [(1000, True), (OFFLOAD_BODY_BYTES + 1, False)])
async def test_large_bodies_are_scanned_off_the_loop(size: int, on_loop: bool) -> None:
    seen: list[str] = []

    async def scan(check: Check) -> None:
        seen.append(threading.current_thread().name)

    offload = ScanOffload(scan)
    lifecycle = offload.lifecycle(web.Application())
    await anext(lifecycle)
    try:
        check = Check(load_policy(REPO / "policies"), b"x" * size, None, "req_1")
        await offload.stage(check)
    finally:
        await anext(lifecycle, None)
    assert (seen == [threading.current_thread().name]) is on_loop


async def test_a_denial_from_the_worker_reaches_the_pipeline() -> None:
    async def scan(check: Check) -> None:
        raise GuardrailBlocked("pii", "block", [])

    offload = ScanOffload(scan, min_bytes=1)
    lifecycle = offload.lifecycle(web.Application())
    await anext(lifecycle)
    try:
        with pytest.raises(GuardrailBlocked):
            await offload.stage(Check(load_policy(REPO / "policies"), orjson.dumps({"a": 1}), None, "req_1"))
        # The loop kept running meanwhile: other tasks are not starved by a scan in the worker.
        await asyncio.sleep(0)
    finally:
        await anext(lifecycle, None)
