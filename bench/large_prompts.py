"""Small requests while large prompts are in flight: what one large scan costs everyone else.

A bounded measurement through the full gateway: first the small-request latency alone, then the
same small requests (one connection, back to back) while `large_count` clients post large prose
prompts (`large_bytes` each, nothing a guardrail flags) back to back. Both phases end at their
deadline or at their request cap, whichever comes first.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench import aioclient, payload
from bench.stats import RoundResult

_MAX_SMALL = 20_000
_MAX_LARGE = 200
_LARGE_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True)
class BesideLarge:
    alone: RoundResult
    beside: RoundResult
    large_done: int
    large_statuses: dict[int, int]  # status -> count (0: the connection failed)


async def measure(url: str, headers: dict[str, str], seconds: float, large_count: int = 4,
                  large_bytes: int = 4_000_000) -> BesideLarge:
    small = payload.chat_body()
    alone = await aioclient.run_load(url, small, headers, 1, seconds, _MAX_SMALL, False)
    large = payload.chat_body(size=large_bytes)
    statuses: dict[int, int] = {}
    budget = [_MAX_LARGE]
    deadline = time.perf_counter() + seconds

    async def large_client(session: aiohttp.ClientSession) -> None:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            try:
                async with session.post(url, data=large, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                statuses[0] = statuses.get(0, 0) + 1

    async with aiohttp.ClientSession(timeout=_LARGE_TIMEOUT) as session:
        clients = [asyncio.create_task(large_client(session)) for _ in range(large_count)]
        await asyncio.sleep(0.2)  # the large uploads are under way
        beside = await aioclient.run_load(url, small, headers, 1, seconds, _MAX_SMALL, False)
        await asyncio.gather(*clients)
    return BesideLarge(alone, beside, sum(statuses.values()), statuses)
