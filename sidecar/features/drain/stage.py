"""Wiring the drain into the app: the callout refuses new requests, /readyz fails, SIGTERM starts it.

`install` is called by the app factory; `handle_sigterm` only by `python -m sidecar serve`, so
tests that build apps in-process never touch signal handlers.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from sidecar.appkeys import DRAIN
from sidecar.callout.pipeline import Check
from sidecar.core.errors import ShuttingDown
from sidecar.extensions import Extensions
from sidecar.features.drain.drain import Drain


def install(app: web.Application, extensions: Extensions, grace_seconds: float) -> Drain:
    """Installs the stage that refuses new requests while draining (503 `gateway_shutting_down`) and puts the Drain on
    the app.
    """
    drain = Drain(grace_seconds)
    app[DRAIN] = drain

    async def refuse_when_draining(check: Check) -> None:
        if drain.draining:
            # Retry-After: by then the client's retry reaches another replica.
            raise ShuttingDown("The gateway is shutting down; retry the request",
                               headers={"Retry-After": "1"})

    extensions.stages["drain"] = refuse_when_draining
    return drain


def handle_sigterm(app: web.Application) -> None:
    """SIGTERM drains first; aiohttp's own shutdown (GracefulExit) follows once the drain is done."""

    async def on_startup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        # Replaces the handler web.run_app installed, which would stop listening at once.
        loop.add_signal_handler(signal.SIGTERM, lambda: _drain_then_exit(app[DRAIN], loop))

    app.on_startup.append(on_startup)


def _drain_then_exit(drain: Drain, loop: asyncio.AbstractEventLoop) -> None:
    drain.begin().add_done_callback(lambda _: loop.call_soon(_graceful_exit))


def _graceful_exit() -> None:
    # Raised from a loop callback, GracefulExit (a SystemExit) ends web.run_app's loop the same
    # way its own SIGTERM handler does, and run_app then cleans up.
    raise web.GracefulExit()
