"""How many sidecar workers a process starts."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sidecar.cli.workers import (
    METRICS_DIR_ENV,
    WORKERS_ENV,
    KeyHandoverError,
    read_handed_key,
    share_metrics,
    unsupported,
    worker_count,
)
from sidecar.devtools.launcher import free_port
from tests.e2e.stacks import REPO


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

    from sidecar.core.limits import StoreConfig
    from sidecar.policy.loader import load_policy
    from tests.e2e.stacks import REPO

    demo = load_policy(REPO / "policies")  # per-token limits on the memory store
    assert demo.limits.limits and demo.limits.store.backend == "memory"
    problem = unsupported(2, demo)
    assert problem is not None and "limits.store.backend: redis" in problem
    assert unsupported(1, demo) is None
    on_redis = replace(demo, limits=replace(demo.limits, store=StoreConfig(backend="redis", redis_url="redis://x")))
    assert unsupported(4, on_redis) is None
    no_limits = replace(demo, limits=replace(demo.limits, limits=()))
    assert unsupported(4, no_limits) is None


# ---- one decision key for every worker -------------------------------------------------------

def test_a_child_reads_the_key_its_parent_handed_over() -> None:
    key = bytes(range(32))
    assert read_handed_key(io.StringIO(key.hex() + "\n")) == key


@pytest.mark.parametrize("given", ["", "\n", "zz" * 32, "ab" * 8])
def test_a_child_without_a_usable_key_says_why(given: str) -> None:
    with pytest.raises(KeyHandoverError, match="needs the decision key of the process that started it"):
        read_handed_key(io.StringIO(given))


def test_a_worker_child_started_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_SIDECAR_WORKER_CHILD": "1", "GATEWAY_POLICIES": str(REPO / "policies"),
           "GATEWAY_SIDECAR_PORT": str(free_port()), "GATEWAY_DECISION_KEY": ""}
    result = subprocess.run([sys.executable, "-m", "sidecar", "serve"], env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert "needs the decision key" in result.stderr


# ---- one metrics directory for every worker --------------------------------------------------

def test_serve_with_several_workers_makes_a_fresh_private_metrics_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes it
    env = {WORKERS_ENV: "2", METRICS_DIR_ENV: "/somewhere/else"}
    made = share_metrics(["serve"], env)
    assert made is not None and made.parent == tmp_path and made.is_dir() and not any(made.iterdir())
    assert env[METRICS_DIR_ENV] == str(made)
    assert made.stat().st_mode & 0o777 == 0o700
    assert share_metrics(["serve"], {WORKERS_ENV: "2"}) not in (None, made)  # each start its own


@pytest.mark.parametrize(("argv", "env", "left"), [
    (["serve"], {}, None),  # one process: in-memory values, whatever the environment said
    (["serve"], {WORKERS_ENV: "1", METRICS_DIR_ENV: "/x"}, None),
    (["serve"], {WORKERS_ENV: "two"}, None),  # `serve` reports the bad number
    (["serve"], {WORKERS_ENV: "2", "GATEWAY_SIDECAR_WORKER_CHILD": "1", METRICS_DIR_ENV: "/x"}, "/x"),  # inherited
    (["run"], {WORKERS_ENV: "2"}, None),  # `run` starts `serve`, which makes the directory
    ([], {WORKERS_ENV: "2"}, None),
])
def test_other_processes_make_no_metrics_directory(argv: list[str], env: dict[str, str], left: str | None) -> None:
    assert share_metrics(argv, env) is None
    assert env.get(METRICS_DIR_ENV) == left


def test_the_workers_module_comes_before_prometheus_client() -> None:
    # sidecar/__main__.py sets PROMETHEUS_MULTIPROC_DIR after importing it; prometheus_client reads
    # the variable once, when it is imported.
    probe = "import sys, sidecar.cli.workers; print('prometheus_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (result.returncode, result.stdout) == (0, "False\n")
