"""How many sidecar workers a process starts."""

from __future__ import annotations

import pytest

from sidecar.cli.workers import WORKERS_ENV, unsupported, worker_count


@pytest.mark.parametrize(("env", "expected"), [
    ({}, 1),
    ({WORKERS_ENV: ""}, 1),
    ({WORKERS_ENV: "0"}, 1),
    ({WORKERS_ENV: "4"}, 4),
    ({WORKERS_ENV: "4", "GATEWAY_SIDECAR_WORKER_CHILD": "1"}, 1),  # a worker never starts more
])
def test_worker_count(env: dict[str, str], expected: int) -> None:
    assert worker_count(env) == expected


def test_several_workers_need_the_redis_quota_store() -> None:
    from dataclasses import replace

    from sidecar.features.quotas.limits import StoreConfig
    from sidecar.policy.loader import load_policy
    from tests.e2e.conftest import REPO

    demo = load_policy(REPO / "policies")  # per-token limits on the memory store
    assert demo.limits.limits and demo.limits.store.backend == "memory"
    problem = unsupported(2, demo)
    assert problem is not None and "limits.store.backend: redis" in problem
    assert unsupported(1, demo) is None
    on_redis = replace(demo, limits=replace(demo.limits, store=StoreConfig(backend="redis", redis_url="redis://x")))
    assert unsupported(4, on_redis) is None
    no_limits = replace(demo, limits=replace(demo.limits, limits=()))
    assert unsupported(4, no_limits) is None
