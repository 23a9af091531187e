"""A reservation's life on both stores: claimed once by the forward, settled once, released when
refused or denied later in the callout, and a short arrival lease until the forward confirms it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from sidecar.callout.pipeline import Check, DecisionPipeline, Denied
from sidecar.core.errors import InvalidRequest, PermissionDenied, RateLimited
from sidecar.core.types import Usage
from sidecar.features.quotas.service import QuotaService
from tests.unit.features.quotas.conftest import Store
from tests.unit.features.quotas.test_service import BODY, TOKEN, decide, exchange, level, policy

RULES = "    day: {tokens_per_day: 100000}\n    conc: {concurrent_requests: 1}"


@pytest.fixture
def service(store: Store, unique: str) -> QuotaService:
    return QuotaService(store.backend, key_prefix=unique, decision_ttl=0.3, arrival_lease=1.0)


async def test_the_forward_claims_a_reservation_once(service: QuotaService, tmp_path: Path) -> None:
    check = await decide(service, policy(tmp_path, RULES))
    decision = check.decision()
    await service.claim(decision)
    with pytest.raises(PermissionDenied) as replayed:
        await service.claim(decision)  # the same decision header sent again
    assert replayed.value.code == "decision_replayed"
    await service.finish(exchange(check, usage=Usage(5, 5)))
    with pytest.raises(PermissionDenied):
        await service.claim(decision)  # settled: still refused


async def test_settlement_happens_once_per_reservation(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, RULES)
    check = await decide(service, current)
    await service.claim(check.decision())
    for _ in range(3):
        await service.finish(exchange(check, usage=Usage(30, 12)))
    assert await level(service, current) == 42  # not 42 - 2 * (estimate - 42)


async def test_a_refused_forward_releases_the_reservation(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, RULES)
    check = await decide(service, current)
    with pytest.raises(RateLimited):
        await decide(service, current)
    await service.refused(check.decision())
    assert await level(service, current) == 0  # the estimate given back
    await decide(service, current)  # and the slot


async def test_a_replay_refused_does_not_release_the_original(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, RULES)
    check = await decide(service, current)
    await service.claim(check.decision())
    await service.refused(check.decision())  # e.g. the same decision replayed with another body
    with pytest.raises(RateLimited):
        await decide(service, current)  # the original request still holds its slot


async def test_an_expired_decision_refused_gives_nothing_back(service: QuotaService, tmp_path: Path) -> None:
    # Its marker may be gone by then (markers live as long as a decision), so a refund could be a
    # second one: a replay of an old, settled decision must not lower the counters.
    current = policy(tmp_path, RULES)
    check = await decide(service, current)
    decision = check.decision(ttl_seconds=0.05)
    await service.claim(decision)
    await service.finish(exchange(check, usage=Usage(30, 12)))
    await asyncio.sleep(1.5)  # past the decision and its marker (decision_ttl 0.3 s + 1 s)
    await service.refused(decision)  # e.g. replayed later with another body
    assert await level(service, current) == 42


async def test_an_unclaimed_slot_comes_back_after_the_arrival_lease(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, RULES)
    await decide(service, current)  # admitted, but its client left before the forward
    with pytest.raises(RateLimited) as full:
        await decide(service, current)
    # The truth: the slot frees at the latest when the arrival lease (1 s here) runs out.
    assert full.value.headers["Retry-After"] == "1"
    assert "at the latest in" in full.value.message
    await asyncio.sleep(1.2)
    await decide(service, current)


async def test_a_claimed_slot_keeps_its_full_lease(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, RULES)
    check = await decide(service, current)
    await service.claim(check.decision())
    await asyncio.sleep(1.2)  # past the arrival lease
    with pytest.raises(RateLimited) as full:
        await decide(service, current)
    assert int(full.value.headers["Retry-After"]) > 60  # the deployment's total timeout + 60 s


async def test_a_later_callout_denial_undoes_the_reservation(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, RULES)

    async def guardrail(check: Check) -> None:
        raise InvalidRequest("blocked")

    pipeline = DecisionPipeline({"quotas": service.check, "guardrails_input": guardrail})
    for _ in range(3):  # a slot of 1: each denial gave it back
        with pytest.raises(Denied):
            await pipeline.decide(current, orjson.dumps(BODY), f"Bearer {TOKEN}", None)
    assert await level(service, current) == 0
