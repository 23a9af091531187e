"""The shared counter store: Redis, so every sidecar replica enforces one limit together.

Each request's check-and-reserve is one Lua script over all its charges, so N replicas
admitting concurrently still admit exactly the limit. All keys carry one hash tag
(`{PREFIX}:…`), so a script's keys always share one slot behind a cluster proxy.
Calls are bounded by `timeout` and never retried: during an outage every call fails fast with
BackendUnavailable and each limit's `on_backend_error` decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sidecar.features.quotas.backend import Adjustment, BackendUnavailable, Charge, Levels, Reserved
from sidecar.features.quotas.redis_scripts import CLAIM, PEEK, RESERVE, SETTLE


class RedisBackend:
    def __init__(self, url: str, timeout: float = 0.25, key_prefix: str = "cgt") -> None:
        self._url = url
        self._key_prefix = key_prefix
        self._timeout = timeout
        self._client: redis.Redis | None = None
        self._reserve: Any = None
        self._settle: Any = None
        self._peek: Any = None
        self._claim: Any = None

    async def start(self) -> None:
        # Connections are made lazily, so a sidecar starts (and fails open or closed) while Redis is down.
        self._client = redis.Redis.from_url(
            self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0, decode_responses=True)
        self._reserve = self._client.register_script(RESERVE)
        self._settle = self._client.register_script(SETTLE)
        self._peek = self._client.register_script(PEEK)
        self._claim = self._client.register_script(CLAIM)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def reserve(self, reservation_id: str, charges: Sequence[Charge], *, apply: bool = True) -> Reserved:
        args: list[str | int] = [reservation_id, int(apply)]
        for charge in charges:
            args += [charge.counter, charge.cap, charge.amount, int(charge.enforced), _extra_ms(charge)]
        result = await self._call(self._reserve, [c.key for c in charges], args)
        count = len(charges)
        return Reserved(bool(int(result[0])), tuple(float(v) for v in result[2:2 + count]), float(result[1]) / 1000,
                        tuple(float(v) for v in result[2 + count:]))

    async def claim(self, reservation_id: str, slot_keys: Sequence[str], lease: float, marker_ttl: float) -> bool:
        args: list[str | int] = [reservation_id, round(lease * 1000), round(marker_ttl * 1000)]
        result = await self._call(self._claim, [self._marker_key(reservation_id), *slot_keys], args)
        return bool(int(result))

    async def settle(self, reservation_id: str, adjustments: Sequence[Adjustment], *, marker_ttl: float = 900.0,
                     only_pending: bool = False) -> bool:
        args: list[str | int] = [reservation_id, round(marker_ttl * 1000), int(only_pending)]
        for adjustment in adjustments:
            args += [adjustment.counter, adjustment.delta, adjustment.cap, round(adjustment.period * 1000)]
        result = await self._call(self._settle, [self._marker_key(reservation_id), *(a.key for a in adjustments)],
                                  args)
        return bool(int(result))

    async def peek(self, charges: Sequence[Charge]) -> Levels:
        args: list[str | int] = []
        for charge in charges:
            args += [charge.counter, charge.cap, _extra_ms(charge)]
        result = await self._call(self._peek, [c.key for c in charges], args)
        return Levels(tuple(float(v) for v in result[1:]), float(result[0]) / 1000)

    def _marker_key(self, reservation_id: str) -> str:
        # The same hash tag as the charges' keys: one cluster slot per script.
        return f"{{{self._key_prefix}}}:reservation:{reservation_id}"

    async def _call(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        if script is None:
            raise BackendUnavailable("Redis backend not started")
        try:
            async with asyncio.timeout(self._timeout * 2):
                result = await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc
        return result


def _extra_ms(charge: Charge) -> int:
    if charge.counter == "bucket":
        return round(charge.period * 1000)
    if charge.counter == "window":
        return round(charge.window_end * 1000)
    return round(charge.lease * 1000)
