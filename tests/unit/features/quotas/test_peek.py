"""`peek`: the status page's read-only look at the counters, the same on memory and Redis."""

from __future__ import annotations

import asyncio
import time

from sidecar.features.quotas.backend import Charge
from tests.unit.features.quotas.conftest import Store
from tests.unit.features.quotas.test_backends import bucket, slots, window


async def test_peek_reads_every_counter_kind_and_changes_nothing(store: Store, unique: str) -> None:
    rpm, day, busy = bucket(f"{unique}:rpm", cap=10), window(f"{unique}:day", 1000, 250), slots(f"{unique}:c", 4)
    for rid in ("a", "b"):
        assert (await store.backend.reserve(rid, [rpm, day, busy])).admitted
    before = time.time()
    seen = await store.backend.peek([rpm, day, busy])
    assert round(seen.used[0]) == 2 and seen.used[1] == 500 and seen.used[2] == 2
    assert before - 5 <= seen.now <= time.time() + 5
    again = await store.backend.peek([rpm, day, busy])  # nothing was added by looking
    assert round(again.used[0]) == 2 and again.used[1:] == (500, 2)
    # A real reservation afterwards sees the same levels plus its own charge only.
    assert (await store.backend.reserve("c", [day])).used == (750,)


async def test_peek_sees_what_another_replica_reserved(store: Store, unique: str) -> None:
    """With Redis the page shows the fleet's figure, not this sidecar's share."""
    day = window(f"{unique}:day", 10_000, 1234)
    other = await store.replica()
    assert (await other.reserve("x", [day])).admitted
    assert (await store.backend.peek([day])).used == (1234,)


async def test_peek_of_unknown_counters_is_zero(store: Store, unique: str) -> None:
    charges = [bucket(f"{unique}:n1", 5), window(f"{unique}:n2", 5, 1), slots(f"{unique}:n3", 5)]
    assert (await store.backend.peek(charges)).used == (0, 0, 0)


async def test_peek_does_not_count_slots_whose_lease_ran_out(store: Store, unique: str) -> None:
    short = Charge(f"{unique}:s", "slots", 5, 1, True, lease=0.05)
    assert (await store.backend.reserve("gone", [short])).admitted
    await asyncio.sleep(0.1)
    assert (await store.backend.peek([short])).used == (0,)
