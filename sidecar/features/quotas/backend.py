"""The counter store interface both backends implement, and the values they exchange.

Three counter types cover every limit kind:
- `bucket`: a leaky bucket holding `used`, draining at `cap` per `period` seconds (per-minute
  rates; it refills continuously, like OpenAI's own limits, so there is no window edge);
- `window`: a plain counter for one calendar window, gone when the window ends;
- `slots`: the set of reservations in flight, each with a lease that frees a slot whose
  release never came (a crashed replica).

`reserve` is all-or-nothing over the charges of one request: every enforced charge must fit,
then all of them (shadow ones too) are added at once. No other reservation can interleave.

A reservation goes pending -> claimed -> settled, tracked by a marker per reservation id:
the callout reserves slots with a short arrival lease (pending); the forwarding path `claim`s
it once (the slots get their full lease; a second claim, a replayed decision, fails); `settle`
applies at most once per reservation, whatever ends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from sidecar.core.limits import Counter


class BackendUnavailable(Exception):
    """The counter store could not be reached; each limit's `on_backend_error` decides."""


# The values of every request (Charge, Reserved, Adjustment) are NamedTuples: immutable like a
# frozen dataclass, but built in a quarter of the time, and a callout builds several.
class Charge(NamedTuple):
    key: str
    counter: Counter
    cap: int
    amount: int
    enforced: bool
    period: float = 60.0  # bucket: seconds to drain `cap`
    window_end: float = 0.0  # window: epoch seconds when the window ends
    lease: float = 0.0  # slots: seconds a slot is held if never released


class Reserved(NamedTuple):
    admitted: bool
    # Per charge: the level after reserving (admitted) or as found (denied).
    used: tuple[float, ...]  # (a dry run: as found)
    now: float  # the store's clock, epoch seconds
    # Per charge: for slots, the earliest lease end among the slots held (epoch seconds; 0 when
    # none is held or for other counters): when a full concurrency limit frees at the latest.
    frees_at: tuple[float, ...] = ()


@dataclass(frozen=True)
class Levels:
    """What `peek` found: per charge, the counter's level now (requests, tokens or micro-USD)."""

    used: tuple[float, ...]
    now: float  # the store's clock, epoch seconds


class Adjustment(NamedTuple):
    """Settlement of one charge: `delta` (real minus reserved) for counters; release for slots."""

    key: str
    counter: Counter
    delta: int = 0
    cap: int = 1
    period: float = 60.0


class QuotaBackend(Protocol):
    async def reserve(self, reservation_id: str, charges: Sequence[Charge], *, apply: bool = True) -> Reserved:
        """Atomically check every enforced charge and, if all fit, add all of them.

        `apply=False` only looks (a dry run such as `explain`): the levels as found, nothing added.
        """
        ...

    async def claim(self, reservation_id: str, slot_keys: Sequence[str], lease: float, marker_ttl: float) -> bool:
        """Pending -> claimed, once: give the reservation's slots `lease` seconds from now (re-adding
        a slot whose arrival lease ran out). False if it was claimed or settled before."""
        ...

    async def settle(self, reservation_id: str, adjustments: Sequence[Adjustment], *, marker_ttl: float = 900.0,
                     only_pending: bool = False) -> bool:
        """Correct counters by real usage and release slots, once per reservation (False: settled
        before, or `only_pending` and already claimed: nothing changed); never fails the request."""
        ...

    async def peek(self, charges: Sequence[Charge]) -> Levels:
        """The counters' levels now, read only (the status page): nothing is added, expired or
        written; `amount` and `enforced` are ignored. Raises BackendUnavailable like `reserve`."""
        ...

    async def start(self) -> None:
        ...

    async def close(self) -> None:
        ...
