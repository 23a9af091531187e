"""Deployment order (priority, weights) and the callout's breaker stage."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from sidecar.callout.pipeline import Check
from sidecar.core.errors import BreakerOpen
from sidecar.core.kinds import Outcome
from sidecar.core.routes import BreakerConfig, Deployment, ModelRegistry, ModelRoute, ProviderType
from sidecar.core.tokens import TokenStore
from sidecar.features.breaker.stage import DeploymentRouter, order_deployments
from sidecar.forward.breaker import BreakerBoard
from sidecar.policy.snapshot import Policy


def dep(name: str, priority: int = 0, weight: float = 1.0, cooldown: float = 30.0) -> Deployment:
    return Deployment(name=name, provider=ProviderType.OPENAI, base_url="http://x", upstream_model=name, priority=priority,
                      weight=weight, breaker=BreakerConfig(consecutive_failures=1, cooldown=cooldown))


def test_priority_orders_and_list_order_breaks_ties_of_equal_keys() -> None:
    deployments = [dep("c", 2), dep("a", 0), dep("b", 1)]
    assert [d.name for d in order_deployments(deployments, random.Random(1))] == ["a", "b", "c"]


def test_weights_share_traffic_within_a_priority() -> None:
    rng = random.Random(7)
    deployments = [dep("heavy", 0, 3.0), dep("light", 0, 1.0), dep("fallback", 1)]
    firsts = Counter(order_deployments(deployments, rng)[0].name for _ in range(4000))
    assert set(firsts) == {"heavy", "light"}
    assert 0.72 < firsts["heavy"] / 4000 < 0.78
    assert all(order_deployments(deployments, rng)[-1].name == "fallback" for _ in range(100))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def check_for(*deployments: Deployment) -> Check:
    route = ModelRoute("gpt-x", "llm", deployments)
    policy = Policy("v1", str(Path(".")), TokenStore({}), ModelRegistry({"gpt-x": route}))
    check = Check(policy, b"", None, "req_1")
    check.route = route
    return check


async def test_stage_leaves_out_open_breakers() -> None:
    board = BreakerBoard(Clock())
    a, b = dep("a", 0), dep("b", 1)
    router = DeploymentRouter(board, random.Random(0))
    check = check_for(a, b)
    await router.stage(check)
    assert check.deployments == ("a", "b")
    permit = board.get("a", a.breaker).acquire()
    assert permit is not None
    permit.record(Outcome.CONNECT)
    check = check_for(a, b)
    await router.stage(check)
    assert check.deployments == ("b",)


async def test_all_open_is_503_with_the_shortest_remaining_cooldown() -> None:
    clock = Clock()
    board = BreakerBoard(clock)
    a, b = dep("prov/a", cooldown=30.0), dep("prov/b", cooldown=10.0)
    for d in (a, b):
        permit = board.get(d.name, d.breaker).acquire()
        assert permit is not None
        permit.record(Outcome.CONNECT)
    clock.now += 2.5
    with pytest.raises(BreakerOpen) as caught:
        await DeploymentRouter(board, random.Random(0)).stage(check_for(a, b))
    error = caught.value
    assert (error.status, error.error_type, error.code) == (503, "circuit_breaker_open", "circuit_breaker_open")
    assert error.headers == {"Retry-After": "8"}
    assert "'gpt-x'" in error.message and "prov/a" in error.message and "prov/b" in error.message
    assert board.breaker_states() == {"prov/a": "open", "prov/b": "open"}
