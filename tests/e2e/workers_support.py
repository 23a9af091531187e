"""For the sidecar workers' end-to-end tests: waiting for every worker to listen, scraping /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# (sample name, sorted label pairs) -> value
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(base_url: str) -> str:
    """GET base_url/metrics: asserts a 200 in Prometheus' text format, returns the text."""
    async with aiohttp.ClientSession() as session, session.get(base_url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return await response.text()


def series_of(text: str) -> Series:
    """Every sample of a scrape, by name and sorted labels."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def wait_for_scrape(base_url: str, done: Callable[[Series], bool], timeout: float = 10.0) -> Series:
    """Scrapes every 50 ms until `done` holds for one scrape or `timeout` seconds pass; returns the last
    scrape (the caller's asserts show what is missing)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = series_of(await scrape(base_url))
        if done(found) or asyncio.get_running_loop().time() >= deadline:
            return found
        await asyncio.sleep(0.05)


async def wait_listening(port: int, count: int, timeout: float = 20.0) -> int:
    """Waits until `count` sockets listen on 127.0.0.1:`port` (one per worker, SO_REUSEPORT), reading
    /proc/net/tcp every 50 ms for up to `timeout` seconds; returns how many there were. A stack is
    up when its first worker answers; the others start after it and take a moment to listen."""
    wanted = f"0100007F:{port:04X}"
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        listening = sum(1 for row in rows if row[1] == wanted and row[3] == "0A")  # 0A: TCP_LISTEN
        if listening >= count or asyncio.get_running_loop().time() >= deadline:
            return listening
        await asyncio.sleep(0.05)
