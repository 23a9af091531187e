"""Per-attempt timers and the drain that cuts them short."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.core.errors import ShuttingDown
from sidecar.core.routes import Timeouts
from sidecar.features.drain.drain import Drain
from sidecar.forward.deadlines import Watch


class Lines:
    """A line source whose lines arrive after the given delays."""

    def __init__(self, *delays: float) -> None:
        self.delays = list(delays)

    async def readline(self) -> bytes:
        await asyncio.sleep(self.delays.pop(0))
        return b"line\n"


def watch_with(**timeouts: float) -> Watch:
    watch = Watch()
    watch.begin(Timeouts(**timeouts))
    return watch


async def test_first_line_within_first_byte_then_idle_gaps() -> None:
    lines = watch_with(first_byte=0.3, idle=0.05, total=5).lines(Lines(0.1, 0.01, 0.2))
    assert await lines.readline() == b"line\n", "0.1s is within first_byte though over idle"
    assert await lines.readline() == b"line\n"
    with pytest.raises(TimeoutError):
        await lines.readline()


async def test_idle_shorter_than_first_byte_applies_from_the_second_line() -> None:
    lines = watch_with(first_byte=30, idle=0.05, total=60).lines(Lines(0.01, 0.01, 10))
    await lines.readline()
    await lines.readline()
    async with asyncio.timeout(2):  # guards the test only: the idle timeout must fire long before
        with pytest.raises(TimeoutError):
            await lines.readline()


async def test_time_spent_between_reads_is_not_provider_silence() -> None:
    lines = watch_with(first_byte=0.2, idle=0.05, total=5).lines(Lines(0.01, 0.01, 0.01))
    for _ in range(3):
        assert await lines.readline() == b"line\n"
        await asyncio.sleep(0.1)  # a slow client: the timer fires between reads and is ignored


async def test_someone_elses_cancel_is_not_a_timeout() -> None:
    lines = watch_with(first_byte=5, idle=5, total=5).lines(Lines(5))
    reading = asyncio.create_task(lines.readline())
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading


async def test_total_caps_every_wait() -> None:
    lines = watch_with(first_byte=5, idle=5, total=0.05).lines(Lines(0.2))
    with pytest.raises(TimeoutError):
        await lines.readline()


async def test_stop_interrupts_a_wait_as_shutting_down() -> None:
    watch = watch_with(first_byte=5, idle=5, total=5)
    lines = watch.lines(Lines(5))
    reading = asyncio.create_task(lines.readline())
    await asyncio.sleep(0.01)
    watch.stop()
    with pytest.raises(ShuttingDown) as caught:
        await reading
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "1"}
    with pytest.raises(ShuttingDown):
        await lines.readline()


async def test_drain_waits_for_in_flight_then_stops_the_rest() -> None:
    drain = Drain(grace_seconds=0.05)
    quick, slow = Watch(), Watch()
    quick.begin(Timeouts())
    slow.begin(Timeouts())

    async def exchange(watch: Watch, seconds: float) -> str:
        with drain.track(watch):
            try:
                await watch.run(asyncio.sleep(seconds), watch.first_byte_deadline())
            except ShuttingDown:
                return "stopped"
        return "finished"

    tasks = [asyncio.create_task(exchange(quick, 0.01)), asyncio.create_task(exchange(slow, 5))]
    await asyncio.sleep(0)
    assert drain.in_flight == 2
    await drain.begin()
    assert drain.draining
    assert [t.result() for t in tasks] == ["finished", "stopped"]
    assert drain.in_flight == 0
    assert drain.begin() is drain.begin(), "idempotent"


async def test_drain_with_nothing_in_flight_ends_at_once() -> None:
    drain = Drain(grace_seconds=30)
    await asyncio.wait_for(drain.begin(), 1)


class Silent:
    """A line source that answers only once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def readline(self) -> bytes:
        await self.release.wait()
        return b"line\n"


async def test_keepalive_pings_during_a_silence_and_never_after_close() -> None:
    source = Silent()
    lines = watch_with(first_byte=5, idle=5, total=10).lines(source)
    pings: list[float] = []

    def ping() -> None:
        pings.append(asyncio.get_running_loop().time())
        if len(pings) == 3:
            source.release.set()  # the provider speaks after the third keepalive

    lines.keep_alive(0.01, ping)
    assert await lines.readline() == b"line\n"
    assert len(pings) == 3
    lines.close()
    await asyncio.sleep(0.05)
    assert len(pings) == 3


async def test_keepalive_does_not_hide_an_idle_timeout() -> None:
    lines = watch_with(first_byte=0.05, idle=0.05, total=5).lines(Silent())
    lines.keep_alive(0.01, lambda: None)
    with pytest.raises(TimeoutError):
        await lines.readline()
