"""The timers of one forwarded exchange, and the handle a shutdown uses to cut it short.

Per attempt (one deployment): the provider's answer must start within `first_byte` of sending
(headers, and for a stream also its first line), later lines may be at most `idle` apart, and
the whole attempt ends after `total`. Connect time is bounded by the HTTP client itself.

Every wait on the provider goes through `Watch.run`, which holds the one `asyncio.timeout` in
force; `stop()` reschedules that timeout to now, so a draining sidecar interrupts a silent
provider at once, and the interrupted wait raises ShuttingDown instead of a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from sidecar.errors import ShuttingDown
from sidecar.models import Timeouts
from sidecar.sse import LineSource

T = TypeVar("T")


class Watch:
    def __init__(self) -> None:
        self.timeouts = Timeouts()
        self.started: float | None = None  # set by begin(), or by the first wait
        self.stopped = False
        self._timer: asyncio.Timeout | None = None

    def begin(self, timeouts: Timeouts) -> None:
        """A new attempt (a fallback deployment has its own timeouts and its own clock)."""
        self.timeouts = timeouts
        self.started = asyncio.get_running_loop().time()

    def stop(self) -> None:
        self.stopped = True
        if self._timer is not None:
            self._timer.reschedule(asyncio.get_running_loop().time())

    async def run(self, awaitable: Awaitable[T], deadline: float) -> T:
        """Awaits `awaitable` until the loop-time `deadline` (never past the attempt's total)."""
        if self.stopped:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never started: close it so it does not warn
            raise ShuttingDown("The gateway is shutting down", headers={"Retry-After": "1"})
        try:
            async with asyncio.timeout_at(min(deadline, self._start() + self.timeouts.total)) as timer:
                self._timer = timer
                return await awaitable
        except TimeoutError:
            if self.stopped:
                raise ShuttingDown("The gateway is shutting down", headers={"Retry-After": "1"}) from None
            raise
        finally:
            self._timer = None

    def _start(self) -> float:
        if self.started is None:
            self.started = asyncio.get_running_loop().time()
        return self.started

    def first_byte_deadline(self) -> float:
        return self._start() + self.timeouts.first_byte

    def idle_deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.timeouts.idle

    def lines(self, content: LineSource) -> TimedLines:
        return TimedLines(self, content)


class TimedLines:
    """A provider stream's lines: the first within `first_byte` of the request, then `idle` apart."""

    def __init__(self, watch: Watch, content: LineSource) -> None:
        self._watch = watch
        self._content = content
        self._first = True

    async def readline(self) -> bytes:
        watch = self._watch
        deadline = watch.first_byte_deadline() if self._first else watch.idle_deadline()
        self._first = False
        return await watch.run(self._content.readline(), deadline)
