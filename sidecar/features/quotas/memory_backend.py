"""The embedded counter store: in-process, exact, persisted to a local file.

Exact because the event loop runs each `reserve` to completion without awaiting, so check and
add cannot interleave. Durable because counters are written to `STATE_DIR/quotas.json` (temp
file, fsync, atomic rename) every `flush_interval` when they changed and once more on shutdown
(SIGTERM), after in-flight requests have settled. Crash-loss bound: a hard crash (SIGKILL, OOM,
power loss) loses at most the usage recorded in the last `flush_interval` (1 s by default).
In-flight slots are not persisted: their requests died with the process. Reservation markers
are, so a decision claimed or settled before a restart is still refused after it.

One process per state file: several sidecar processes or replicas must share the Redis backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from sidecar.features.quotas.backend import Adjustment, Charge, Levels, Reserved

log = logging.getLogger("sidecar.quotas")
STATE_FILE = "quotas.json"
_FORMAT = 1


class MemoryBackend:
    def __init__(self, state_dir: Path | None, flush_interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._path = state_dir / STATE_FILE if state_dir is not None else None
        self._flush_interval = flush_interval
        self._clock = clock  # wall clock: persisted levels must survive a restart
        self._buckets: dict[str, list[float]] = {}  # key -> [used, at, drain per second]
        self._windows: dict[str, list[float]] = {}  # key -> [used, window end]
        self._slots: dict[str, dict[str, float]] = {}  # key -> {reservation id: lease end}
        # Reservation id -> (state "claimed" | "settled", marker end); absent means pending.
        self._markers: dict[str, tuple[str, float]] = {}
        self._dirty = False
        self._flusher: asyncio.Task[None] | None = None
        self._load()

    # ---- counting --------------------------------------------------------------------------
    async def reserve(self, reservation_id: str, charges: Sequence[Charge], *, apply: bool = True) -> Reserved:
        now = self._clock()
        used: list[float] = []
        admitted, holds_slots = True, False
        buckets, windows = self._buckets, self._windows
        for charge in charges:  # one loop, the levels read inline (as _level): this runs on every callout
            counter = charge.counter
            if counter == "bucket":
                entry = buckets.get(charge.key)
                level = 0.0 if entry is None else max(
                    0.0, entry[0] - max(0.0, now - entry[1]) * charge.cap / charge.period)
            elif counter == "window":
                found = windows.get(charge.key)
                level = found[0] if found is not None and found[1] > now else 0.0
            else:
                level = self._level(charge, now)
                holds_slots = True
            used.append(level)
            if charge.enforced and not level + charge.amount <= charge.cap:
                admitted = False
        if admitted and apply:
            for index, charge in enumerate(charges):
                level = used[index] = used[index] + charge.amount
                if charge.counter == "bucket":
                    buckets[charge.key] = [level, now, charge.cap / charge.period]
                elif charge.counter == "window":
                    windows[charge.key] = [level, charge.window_end]
                else:
                    self._slots.setdefault(charge.key, {})[reservation_id] = now + charge.lease
            self._dirty = True
        # Per charge, as the Redis script answers it (most requests hold no slot).
        frees = (tuple(min(self._slots.get(c.key, {}).values(), default=0.0) if c.counter == "slots" else 0.0
                       for c in charges) if holds_slots else (0.0,) * len(charges))
        return tuple.__new__(Reserved, (admitted, tuple(used), now, frees))  # without its Python-level __new__

    async def claim(self, reservation_id: str, slot_keys: Sequence[str], lease: float, marker_ttl: float) -> bool:
        now = self._clock()
        if self._marker(reservation_id, now) is not None:
            return False
        self._markers[reservation_id] = ("claimed", now + marker_ttl)
        for key in slot_keys:
            self._slots.setdefault(key, {})[reservation_id] = now + lease
        self._dirty = True
        return True

    async def settle(self, reservation_id: str, adjustments: Sequence[Adjustment], *, marker_ttl: float = 900.0,
                     only_pending: bool = False) -> bool:
        now = self._clock()
        state = self._marker(reservation_id, now)
        if state == "settled" or (only_pending and state == "claimed"):
            return False
        self._markers[reservation_id] = ("settled", now + marker_ttl)
        for adjustment in adjustments:
            if adjustment.counter == "slots":
                self._slots.get(adjustment.key, {}).pop(reservation_id, None)
            elif adjustment.counter == "window":
                entry = self._windows.get(adjustment.key)
                if entry is not None:  # a window that already ended is not reopened
                    entry[0] = max(0.0, entry[0] + adjustment.delta)
            elif adjustment.delta:
                level = self._bucket_level(adjustment.key, adjustment.cap, adjustment.period, now)
                self._buckets[adjustment.key] = [max(0.0, level + adjustment.delta), now,
                                                 adjustment.cap / adjustment.period]
        self._dirty = True
        return True

    def _marker(self, reservation_id: str, now: float) -> str | None:
        marker = self._markers.get(reservation_id)
        return marker[0] if marker is not None and marker[1] > now else None

    async def peek(self, charges: Sequence[Charge]) -> Levels:
        now = self._clock()
        return Levels(tuple(self._peek_level(charge, now) for charge in charges), now)

    def _peek_level(self, charge: Charge, now: float) -> float:
        if charge.counter == "slots":  # leases that ran out are not counted (nor swept: read only)
            return float(sum(1 for end in self._slots.get(charge.key, {}).values() if end > now))
        return self._level(charge, now)

    def _level(self, charge: Charge, now: float) -> float:
        if charge.counter == "bucket":
            return self._bucket_level(charge.key, charge.cap, charge.period, now)
        if charge.counter == "window":
            entry = self._windows.get(charge.key)
            return entry[0] if entry is not None and entry[1] > now else 0.0
        slots = self._slots.get(charge.key, {})
        if len(slots) + charge.amount > charge.cap:
            # Only when full does it matter whether some lease ran out (its release never came);
            # sweeping on every request would cost O(requests in flight).
            _expire(slots, now)
        return float(len(slots))

    def _bucket_level(self, key: str, cap: int, period: float, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry[0] - max(0.0, now - entry[1]) * cap / period)

    # ---- persistence -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._path is not None and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_periodically())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except OSError:  # a full disk must not stop counting; the next flush retries
                log.exception("could not persist quota usage", extra={"fields": {"path": str(self._path)}})

    async def flush(self) -> None:
        self._prune(self._clock())
        if self._path is None or not self._dirty:
            return
        self._dirty = False
        snapshot = orjson.dumps(self._snapshot(self._clock()))
        try:
            await asyncio.to_thread(_write_atomically, self._path, snapshot)
        except OSError:
            self._dirty = True
            raise

    def _prune(self, now: float) -> None:
        """Forgets drained buckets, ended windows and empty slot sets, so memory stays bounded."""
        self._buckets = {k: v for k, v in self._buckets.items() if v[0] - (now - v[1]) * v[2] > 0}
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        for slots in self._slots.values():
            _expire(slots, now)
        self._slots = {k: v for k, v in self._slots.items() if v}
        self._markers = {k: v for k, v in self._markers.items() if v[1] > now}

    def _snapshot(self, now: float) -> dict[str, Any]:
        return {"format": _FORMAT, "saved_at": now, "buckets": self._buckets, "windows": self._windows,
                "markers": self._markers}

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            data = orjson.loads(self._path.read_bytes())
            if data.get("format") != _FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            now = self._clock()
            self._buckets = {str(k): [float(v[0]), float(v[1]), float(v[2])] for k, v in data["buckets"].items()}
            self._windows = {str(k): [float(v[0]), float(v[1])] for k, v in data["windows"].items() if v[1] > now}
            self._markers = {str(k): (str(v[0]), float(v[1])) for k, v in data.get("markers", {}).items()
                             if v[1] > now}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            # Refusing to start would take the whole gateway down; starting from zero is logged loudly.
            log.exception("quota state unreadable; starting with empty counters",
                          extra={"fields": {"path": str(self._path)}})


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)


def _expire(slots: dict[str, float], now: float) -> None:
    for rid in [rid for rid, end in slots.items() if end <= now]:
        del slots[rid]
