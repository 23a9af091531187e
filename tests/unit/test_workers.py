"""How many sidecar workers a process starts."""

from __future__ import annotations

import pytest

from sidecar.workers import WORKERS_ENV, worker_count


@pytest.mark.parametrize(("env", "expected"), [
    ({}, 1),
    ({WORKERS_ENV: ""}, 1),
    ({WORKERS_ENV: "0"}, 1),
    ({WORKERS_ENV: "4"}, 4),
    ({WORKERS_ENV: "4", "GATEWAY_SIDECAR_WORKER_CHILD": "1"}, 1),  # a worker never starts more
])
def test_worker_count(env: dict[str, str], expected: int) -> None:
    assert worker_count(env) == expected
