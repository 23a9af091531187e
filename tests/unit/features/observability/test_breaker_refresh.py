"""With several workers each one records its breakers' states itself, not only when it answers a scrape."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from sidecar.appkeys import BREAKERS, METRICS
from sidecar.core.routes import BreakerConfig
from sidecar.features.observability.breaker_refresh import REFRESH_SECONDS, install_breaker_refresh
from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.forward.breaker import BreakerBoard
from tests.unit.features.observability.conftest import Worker


def app_with(metrics: GatewayMetrics) -> web.Application:
    app = web.Application()
    app[METRICS] = metrics
    app[BREAKERS] = board = BreakerBoard()
    board.get("demo/gpt-4", BreakerConfig())
    install_breaker_refresh(app)
    return app


async def test_each_worker_writes_its_breaker_states_while_it_runs(worker: Worker) -> None:
    metrics = worker(os.getpid())
    app = app_with(metrics)
    runner = web.AppRunner(app)
    await runner.setup()  # the app starts: the first refresh runs at once
    try:
        await asyncio.sleep(0)
        assert metrics.exposed.get_sample_value(
            "gateway_breaker_state", {"deployment": "demo/gpt-4", "gateway_breaker_state": "closed"}) == 1
        # Nobody scraped this worker: the states came from the refresh task.
        assert len([task for task in asyncio.all_tasks() if "_refresh" in repr(task.get_coro())]) == 1
    finally:
        await runner.cleanup()  # the app stops: the task ends
    assert not [task for task in asyncio.all_tasks() if "_refresh" in repr(task.get_coro())]
    assert REFRESH_SECONDS <= 1.0  # well inside a scrape interval


def test_one_process_records_breakers_when_scraped_only() -> None:
    assert not list(app_with(GatewayMetrics()).cleanup_ctx)
