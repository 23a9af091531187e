"""With several sidecar workers, each one writes its breakers' states to the shared metrics every second.

One process records them when it answers a scrape (sidecar/features/observability/install.py):
the state is read then, since a cool-down ends without an event. With several workers only the
worker that answers is asked, so every worker also records its own every `REFRESH_SECONDS`
(multiprocess mode only: one process needs no task). The pod-level value is the largest over the
live workers (sidecar/features/observability/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.appkeys import BREAKERS, METRICS

REFRESH_SECONDS = 1.0


def install_breaker_refresh(app: web.Application) -> None:
    """Starts the refresh with the app when app[METRICS] is in multiprocess mode; call after the breaker
    feature installed app[BREAKERS]."""
    if app[METRICS].multiprocess:
        app.cleanup_ctx.append(_refreshing)


def record_breakers(app: web.Application) -> None:
    """Records the state of every breaker this process has (one per deployment it has sent to)."""
    breakers = app.get(BREAKERS)
    if breakers is not None:
        metrics = app[METRICS]
        for deployment, state in breakers.breaker_states().items():
            metrics.breaker_state(deployment, state)


async def _refreshing(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_refresh(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _refresh(app: web.Application) -> None:
    while True:
        record_breakers(app)
        await asyncio.sleep(REFRESH_SECONDS)
