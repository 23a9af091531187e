"""Counter semantics every quota store must share (memory and Redis alike)."""

from __future__ import annotations

import asyncio
import time

from sidecar.features.quotas.backend import Adjustment, Charge
from tests.unit.features.quotas.conftest import Store


def bucket(key: str, cap: int, amount: int = 1, enforced: bool = True) -> Charge:
    return Charge(key, "bucket", cap, amount, enforced, period=60.0)


def window(key: str, cap: int, amount: int, seconds: float = 3600.0) -> Charge:
    return Charge(key, "window", cap, amount, True, window_end=time.time() + seconds)


def slots(key: str, cap: int, lease: float = 60.0) -> Charge:
    return Charge(key, "slots", cap, 1, True, lease=lease)


async def test_a_bucket_admits_up_to_its_cap(store: Store, unique: str) -> None:
    charge = bucket(f"{unique}:rpm", cap=3)
    results = [await store.backend.reserve(f"r{i}", [charge]) for i in range(4)]
    assert [r.admitted for r in results] == [True, True, True, False]
    assert [round(r.used[0]) for r in results] == [1, 2, 3, 3]


async def test_reservation_is_all_or_nothing(store: Store, unique: str) -> None:
    roomy, tight = bucket(f"{unique}:roomy", cap=100, amount=10), window(f"{unique}:tight", cap=15, amount=10)
    assert (await store.backend.reserve("a", [roomy, tight])).admitted
    denied = await store.backend.reserve("b", [roomy, tight])
    assert not denied.admitted
    # The roomy counter was not charged for the denied request.
    assert round(denied.used[0]) == 10
    assert denied.used[1] == 10
    assert round((await store.backend.reserve("c", [roomy])).used[0]) == 20


async def test_shadow_charges_never_deny_but_count(store: Store, unique: str) -> None:
    shadow = bucket(f"{unique}:shadow", cap=1, enforced=False)
    results = [await store.backend.reserve(f"r{i}", [shadow]) for i in range(3)]
    assert all(r.admitted for r in results)
    assert round(results[-1].used[0]) == 3


async def test_settling_returns_the_unused_part_of_a_window(store: Store, unique: str) -> None:
    charge = window(f"{unique}:day", cap=1000, amount=600)
    assert (await store.backend.reserve("a", [charge])).admitted
    assert not (await store.backend.reserve("b", [charge])).admitted
    await store.backend.settle("a", [Adjustment(charge.key, "window", -550)])
    second = await store.backend.reserve("b", [charge])
    assert second.admitted and second.used[0] == 650


async def test_settling_can_exceed_the_cap_and_then_denies(store: Store, unique: str) -> None:
    charge = window(f"{unique}:day", cap=100, amount=10)
    assert (await store.backend.reserve("a", [charge])).admitted
    await store.backend.settle("a", [Adjustment(charge.key, "window", 150)])  # used more than estimated
    denied = await store.backend.reserve("b", [charge])
    assert not denied.admitted and denied.used[0] == 160


async def test_settling_never_goes_below_zero(store: Store, unique: str) -> None:
    charge = window(f"{unique}:day", cap=100, amount=10)
    await store.backend.reserve("a", [charge])
    await store.backend.settle("a", [Adjustment(charge.key, "window", -500)])
    assert (await store.backend.reserve("b", [charge])).used[0] == 10


async def test_settling_an_ended_window_does_not_reopen_it(store: Store, unique: str) -> None:
    await store.backend.settle("a", [Adjustment(f"{unique}:gone", "window", 40)])
    fresh = await store.backend.reserve("b", [window(f"{unique}:gone", cap=100, amount=1)])
    assert fresh.used[0] == 1


async def test_settling_a_bucket_charges_the_real_amount(store: Store, unique: str) -> None:
    charge = bucket(f"{unique}:tpm", cap=600, amount=100)
    await store.backend.reserve("a", [charge])
    await store.backend.settle("a", [Adjustment(charge.key, "bucket", 400, cap=600)])
    after = await store.backend.reserve("b", [bucket(charge.key, cap=600, amount=1)])
    # 500 charged in all (+1 now), minus at most a few tokens drained (10 per second).
    assert 490 <= after.used[0] <= 501


async def test_a_bucket_refills_continuously(store: Store, unique: str) -> None:
    charge = bucket(f"{unique}:fast", cap=6000)  # drains 100 per second
    await store.backend.reserve("a", [Charge(charge.key, "bucket", 6000, 6000, True)])
    assert not (await store.backend.reserve("b", [charge])).admitted
    await asyncio.sleep(0.1)
    assert (await store.backend.reserve("c", [charge])).admitted


async def test_slots_are_held_until_released(store: Store, unique: str) -> None:
    charge = slots(f"{unique}:conc", cap=2)
    assert (await store.backend.reserve("a", [charge])).admitted
    assert (await store.backend.reserve("b", [charge])).admitted
    assert not (await store.backend.reserve("c", [charge])).admitted
    await store.backend.settle("a", [Adjustment(charge.key, "slots")])
    assert (await store.backend.reserve("c", [charge])).admitted


async def test_a_slot_whose_release_never_comes_expires_with_its_lease(store: Store, unique: str) -> None:
    charge = slots(f"{unique}:leased", cap=1, lease=0.05)
    assert (await store.backend.reserve("a", [charge])).admitted
    assert not (await store.backend.reserve("b", [charge])).admitted
    await asyncio.sleep(0.1)
    assert (await store.backend.reserve("b", [charge])).admitted


async def test_a_concurrent_burst_admits_exactly_the_limit(store: Store, unique: str) -> None:
    charges = [bucket(f"{unique}:rpm", cap=7), slots(f"{unique}:conc", cap=1000)]
    results = await asyncio.gather(*(store.backend.reserve(f"r{i}", charges) for i in range(40)))
    assert sum(r.admitted for r in results) == 7


async def test_replicas_sharing_the_store_admit_exactly_the_limit(store: Store, unique: str) -> None:
    replicas = [await store.replica() for _ in range(3)]
    charge = window(f"{unique}:day", cap=10, amount=1)
    results = await asyncio.gather(*(replicas[i % 3].reserve(f"r{i}", [charge]) for i in range(30)))
    assert sum(r.admitted for r in results) == 10


async def test_large_spend_amounts_stay_exact(store: Store, unique: str) -> None:
    budget = 10**15  # a billion dollars in micro-USD
    charge = window(f"{unique}:spend", cap=budget, amount=3 * 10**14 + 7)
    assert (await store.backend.reserve("a", [charge])).used[0] == 3 * 10**14 + 7
    await store.backend.settle("a", [Adjustment(charge.key, "window", -(10**14))])
    assert (await store.backend.reserve("b", [charge])).used[0] == 5 * 10**14 + 14
