"""A bounded asyncio load client: streams (time to first byte and whole stream), held-open
streams, and non-streaming requests when wrk is unavailable.

Every loop is bounded by a request count and a deadline; every connection goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.stats import RoundResult, percentile

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass
class _Tally:
    first_byte_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    errors: int = 0


def _check_local(url: str) -> None:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to 127.0.0.1, not {url}")


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
               tally: _Tally) -> None:
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            first = await response.content.readany()
            first_at = time.perf_counter()
            while await response.content.readany():
                pass
            if response.status != 200 or not first:
                tally.errors += 1
                return
    except (aiohttp.ClientError, TimeoutError):
        tally.errors += 1
        return
    tally.first_byte_ms.append((first_at - started) * 1000.0)
    tally.total_ms.append((time.perf_counter() - started) * 1000.0)


async def run_load(url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float,
                   max_requests: int, streaming: bool) -> RoundResult:
    """`connections` workers post back to back until the deadline or `max_requests` in all."""
    _check_local(url)
    tally = _Tally()
    budget = [max_requests]
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=_REQUEST_TIMEOUT) as session:
        async def worker() -> None:
            while budget[0] > 0 and time.perf_counter() < deadline:
                budget[0] -= 1
                await _one(session, url, body, headers, tally)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    done = len(tally.total_ms)
    if streaming:
        return RoundResult(done, tally.errors, elapsed, percentile(tally.first_byte_ms, 50),
                           percentile(tally.first_byte_ms, 99), percentile(tally.total_ms, 50),
                           percentile(tally.total_ms, 99))
    return RoundResult(done, tally.errors, elapsed, percentile(tally.total_ms, 50), percentile(tally.total_ms, 99))


@dataclass(frozen=True)
class HeldStreams:
    opened: int
    failed: int
    seconds_to_open: float
    measured: dict[str, float]
    failures: dict[str, int] = field(default_factory=dict)  # reason -> count


async def hold_streams(url: str, body: bytes, headers: dict[str, str], count: int, open_timeout: float,
                       measure: Callable[[], dict[str, float]]) -> HeldStreams:
    """Opens `count` streams, waits until each has sent its first byte, calls `measure()` while
    all are still open, then closes them all."""
    _check_local(url)
    opened = asyncio.Event()
    state = {"open": 0, "failed": 0}
    reasons: dict[str, int] = {}
    release = asyncio.Event()

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200 or not await response.content.readany():
                    state["failed"] += 1
                    reasons[f"HTTP {response.status}"] = reasons.get(f"HTTP {response.status}", 0) + 1
                    return
                state["open"] += 1
                if state["open"] + state["failed"] >= count:
                    opened.set()
                await release.wait()
        except (aiohttp.ClientError, TimeoutError) as exc:
            state["failed"] += 1
            reasons[type(exc).__name__] = reasons.get(type(exc).__name__, 0) + 1
        finally:
            if state["open"] + state["failed"] >= count:
                opened.set()

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=open_timeout + 30)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(count)]
        with contextlib.suppress(TimeoutError):  # fewer opened in time: the report says how many
            await asyncio.wait_for(opened.wait(), open_timeout)
        took = time.perf_counter() - started
        # Let the streams run a moment so per-stream buffers are in their steady state.
        await asyncio.sleep(1.0)
        measured = measure()
        open_now = state["open"]
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return HeldStreams(open_now, state["failed"], took, measured, reasons)
