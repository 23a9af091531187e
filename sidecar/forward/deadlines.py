"""The timers of one forwarded exchange, and the handle a shutdown uses to cut it short.

Per attempt (one deployment): the provider's answer must start within `first_byte` of sending
(headers, and for a stream also its first line), later lines may be at most `idle` apart, and
the whole attempt ends after `total`. Connect time is bounded by the HTTP client itself.

Every wait on the provider goes through the Watch: `run` (headers, whole bodies) or the stream's
`TimedLines`. `stop()` ends the wait in progress at once, so a draining sidecar interrupts a
silent provider, and the interrupted wait raises ShuttingDown instead of a timeout.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sidecar.core.errors import ShuttingDown
from sidecar.core.routes import Timeouts
from sidecar.forward.sse import LineSource

T = TypeVar("T")


class Watch:
    """The timers of one forwarded exchange (seconds, loop time) and the switch a shutdown flips."""

    def __init__(self) -> None:
        self.timeouts = Timeouts()
        self.started: float | None = None  # set by begin(), or by the first wait
        self.stopped = False
        self._timer: asyncio.Timeout | None = None
        self._lines: TimedLines | None = None

    def begin(self, timeouts: Timeouts) -> None:
        """A new attempt (a fallback deployment has its own timeouts and its own clock)."""
        self.timeouts = timeouts
        self.started = asyncio.get_running_loop().time()

    def stop(self) -> None:
        """Ends the wait in progress and every later one with ShuttingDown (a draining sidecar)."""
        self.stopped = True
        if self._timer is not None:
            self._timer.reschedule(asyncio.get_running_loop().time())
        if self._lines is not None:
            self._lines.interrupt()

    async def run(self, awaitable: Awaitable[T], deadline: float) -> T:
        """Awaits `awaitable` until the loop-time `deadline` (never past the attempt's total)."""
        if self.stopped:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never started: close it so it does not warn
            raise _shutting_down()
        try:
            async with asyncio.timeout_at(min(deadline, self.total_deadline())) as timer:
                self._timer = timer
                return await awaitable
        except TimeoutError:
            if self.stopped:
                raise _shutting_down() from None
            raise
        finally:
            self._timer = None

    def _start(self) -> float:
        if self.started is None:
            self.started = asyncio.get_running_loop().time()
        return self.started

    def total_deadline(self) -> float:
        """Loop time when the attempt must be over (`timeouts.total` after it began)."""
        return self._start() + self.timeouts.total

    def first_byte_deadline(self) -> float:
        """Loop time by which the answer must start (`timeouts.first_byte` after it began)."""
        return self._start() + self.timeouts.first_byte

    def idle_deadline(self) -> float:
        """Loop time by which the next read must complete (`timeouts.idle` from now)."""
        return asyncio.get_running_loop().time() + self.timeouts.idle

    def lines(self, content: LineSource) -> TimedLines:
        """The stream's lines under the first-byte, idle and total deadlines (TimeoutError when one passes)."""
        self.close()
        self._lines = TimedLines(self, content)
        return self._lines

    def close(self) -> None:
        """The exchange is over: drop the stream timer so nothing outlives it."""
        if self._lines is not None:
            self._lines.close()
            self._lines = None


class TimedLines:
    """A provider stream's lines: the first within `first_byte` of the request, then `idle` apart.

    This is the hot path (every read of every stream), so instead of an `asyncio.timeout` per
    read, one timer per stream only moves a deadline forward; when it fires while a read is
    still waiting past the deadline, it cancels that read, which then raises TimeoutError (or
    ShuttingDown), the way `asyncio.timeout` does. The same timer calls the keepalive (see
    `keep_alive`), so a stream needs no task of its own for it.
    """

    def __init__(self, watch: Watch, content: LineSource) -> None:
        self._watch = watch
        self._content = content
        loop = asyncio.get_running_loop()
        self._call_at, self._now = loop.call_at, loop.time
        self._idle, self._total = watch.timeouts.idle, watch.total_deadline()
        self._deadline = min(watch.first_byte_deadline(), self._total)
        self._first = True
        self._task: asyncio.Task[object] | None = None  # the one task reading this stream
        self._reading = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._fired = False
        self._ping: Callable[[], None] | None = None
        self._ping_every = self._ping_at = math.inf

    def keep_alive(self, every: float, ping: Callable[[], None]) -> None:
        """Calls `ping()` every `every` seconds (loop time) from now until `close()`, reading or not
        (what a ping task per stream did); `ping` must not raise."""
        self._ping, self._ping_every = ping, every
        self._ping_at = self._now() + every
        if self._ping_at < self._timer_at:
            self._arm(self._ping_at)

    async def readline(self) -> bytes:
        """The next line (b"" at the end); raises TimeoutError past a deadline, ShuttingDown once stopped."""
        return await self.read(self._content.readline)

    async def read(self, read: Callable[[], Awaitable[T]]) -> T:
        """`await read()` (the next line, or batch of lines) under the deadlines: the first read's is
        `first_byte`, each later one's `idle` from when it starts; TimeoutError past it,
        ShuttingDown once stopped."""
        if self._watch.stopped:
            raise _shutting_down()
        if self._first:
            self._first = False
            self._task = asyncio.current_task()
        else:
            deadline = self._now() + self._idle
            self._deadline = deadline if deadline < self._total else self._total
        if self._deadline < self._timer_at:
            # First read, or the deadline moved earlier (first_byte was longer than idle).
            self._arm(self._deadline)
        self._reading = True
        try:
            return await read()
        except asyncio.CancelledError:
            # Ours only if nobody else (a client disconnect) asked to cancel the task as well.
            if self._fired and self._task is not None and self._task.uncancel() == 0:
                self._fired = False
                raise (_shutting_down() if self._watch.stopped else TimeoutError()) from None
            raise
        finally:
            self._reading = False

    def interrupt(self) -> None:
        """Ends a waiting read now (a draining sidecar)."""
        if self._reading and not self._fired and self._task is not None:
            self._fired = True
            self._task.cancel()

    def close(self) -> None:
        """Cancels the timer (the stream is over): no more deadlines, no more keepalives."""
        self._ping, self._ping_at = None, math.inf
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self._call_at(at, self._expire), at

    def _expire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._now()
        if self._ping is not None and self._ping_at <= now:
            self._ping_at = now + self._ping_every
            self._ping()
        if self._reading:
            if now >= self._deadline:
                self.interrupt()
            elif self._deadline < self._ping_at:
                self._arm(self._deadline)
                return
        # Between reads the deadline is stale: the next read arms a fresh timer for its own.
        if self._ping_at < math.inf:
            self._arm(self._ping_at)


def _shutting_down() -> ShuttingDown:
    return ShuttingDown("The gateway is shutting down", headers={"Retry-After": "1"})
