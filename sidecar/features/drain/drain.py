"""Graceful shutdown: refuse new work, let in-flight exchanges finish, then end the rest cleanly.

On SIGTERM the sidecar turns not-ready (/readyz 503) and the callout answers new requests with
503 `gateway_shutting_down` + `Retry-After`, while everything already forwarded runs on for up to
the grace period (GATEWAY_DRAIN_SECONDS). Exchanges still running then are stopped through their
`Watch`: a stream gets an error event and `data: [DONE]`, a whole completion a JSON 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sidecar.forward.deadlines import Watch

log = logging.getLogger("sidecar.drain")
# After stopping the stragglers, how long they get to write their last events.
_FINAL_WRITE_SECONDS = 2.0


class Drain:
    """Graceful shutdown: new requests are refused, exchanges in flight get `grace_seconds`, then are stopped."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.draining = False
        self._grace_over = False
        self._watches: set[Watch] = set()
        self._all_done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Forwarded exchanges still running."""
        return len(self._watches)

    @contextmanager
    def track(self, watch: Watch) -> Iterator[Watch]:
        """Tracks one exchange's Watch while the block runs (stopped at once if the grace period is over)."""
        self._watches.add(watch)
        if self._grace_over:
            watch.stop()  # decided before the drain began, but arriving after its grace period
        try:
            yield watch
        finally:
            self._watches.discard(watch)
            if not self._watches:
                self._all_done.set()

    def begin(self) -> asyncio.Task[None]:
        """Starts draining (idempotent); the task ends when every exchange has ended."""
        if self.task is None:
            self.draining = True
            self.task = asyncio.get_running_loop().create_task(self._run())
        return self.task

    async def _run(self) -> None:
        log.warning("draining", extra={"fields": {"in_flight": self.in_flight, "grace_s": self.grace_seconds}})
        if not await self._wait_all_done(self.grace_seconds):
            log.warning("grace period over: ending in-flight exchanges", extra={"fields": {
                "in_flight": self.in_flight}})
            self._grace_over = True
            for watch in list(self._watches):
                watch.stop()
            await self._wait_all_done(_FINAL_WRITE_SECONDS)
        log.info("drained", extra={"fields": {"in_flight": self.in_flight}})

    async def _wait_all_done(self, seconds: float) -> bool:
        if not self._watches:
            return True
        self._all_done.clear()
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._all_done.wait()
        return not self._watches
