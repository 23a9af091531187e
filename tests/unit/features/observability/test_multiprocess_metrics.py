"""Several sidecar workers, one /metrics: prometheus_client's multiprocess mode, simulated in one process.

Each `worker(pid)` (conftest.py) is a GatewayMetrics whose values go to the shared directory's files
under that pid, as a worker process's would. Real processes: tests/e2e/test_workers_e2e.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.features.observability.multiprocess import MULTIPROC_ENV, forget_dead_workers, shared_dir
from tests.unit.features.observability.conftest import Worker

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def series(metrics: GatewayMetrics) -> Series:
    """Every sample /metrics shows: (name, labels) -> value."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for sample in family.samples}


def value(found: Series, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def exited_pid() -> int:
    """The pid of a process that has exited and been waited for."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def other_live_pid() -> int:
    """A running process that is not this one (a live worker's gauges count)."""
    return os.getppid()


def test_any_worker_answers_with_the_sum_over_all_workers(worker: Worker) -> None:
    first = worker(other_live_pid())
    for status in (200, 200, 429):
        first.request("gpt-4", status, "demo")
    first.exchange("gpt-4", "demo", 0.2, 0.1, 5, 7)
    second = worker(os.getpid())
    second.request("gpt-4", 200, "demo")
    second.exchange("gpt-4", "demo", 0.3, None, 5, 0)
    second.spent("gpt-4", "demo", 0.25)
    found = series(second)
    assert series(first) == found  # whichever worker Prometheus reaches
    assert value(found, "gateway_requests_total", model="gpt-4", status="200", token="demo") == 3
    assert value(found, "gateway_requests_total", model="gpt-4", status="429", token="demo") == 1
    assert value(found, "gateway_tokens_total", model="gpt-4", token="demo", kind="prompt") == 10
    assert value(found, "gateway_tokens_total", model="gpt-4", token="demo", kind="completion") == 7
    assert value(found, "gateway_spend_usd_total", model="gpt-4", token="demo") == 0.25
    assert value(found, "gateway_request_duration_seconds_count", model="gpt-4") == 2
    assert value(found, "gateway_request_duration_seconds_sum", model="gpt-4") == pytest.approx(0.5)
    assert value(found, "gateway_request_duration_seconds_bucket", model="gpt-4", le="0.25") == 1
    assert value(found, "gateway_request_duration_seconds_bucket", model="gpt-4", le="+Inf") == 2
    assert value(found, "gateway_time_to_first_token_seconds_count", model="gpt-4") == 1
    # Each worker's own registry still holds only its own counts.
    assert second.registry.get_sample_value(
        "gateway_requests_total", {"model": "gpt-4", "status": "200", "token": "demo"}) == 1


def test_breaker_and_policy_series_keep_their_single_process_names_and_labels(
        worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as one_process:
        one_process.delenv(MULTIPROC_ENV)
        single = GatewayMetrics()  # in memory: its values are recorded before any `worker` exists
    single.breaker_state("demo/gpt-4", "open")
    single.policy_loaded("aaa", 100.0)
    shared = worker(os.getpid())
    shared.breaker_state("demo/gpt-4", "open")
    shared.policy_loaded("aaa", 100.0)
    wanted = {"gateway_breaker_state", "gateway_policy_info", "gateway_policy_loaded_timestamp_seconds",
              "gateway_policy_reload_errors"}

    def shape(metrics: GatewayMetrics) -> dict[str, object]:
        return {family.name: (family.type, family.documentation, sorted(
            (sample.name, sorted(sample.labels.items()), sample.value) for sample in family.samples))
            for family in text_string_to_metric_families(metrics.render().decode()) if family.name in wanted}

    assert shape(shared) == shape(single)
    assert set(shape(single)) == wanted


def test_pod_breaker_state_is_1_where_any_live_worker_is(worker: Worker) -> None:
    first = worker(other_live_pid())
    first.breaker_state("demo/gpt-4", "open")
    second = worker(os.getpid())
    second.breaker_state("demo/gpt-4", "closed")
    second.breaker_state("demo/gpt-3", "half_open")
    found = series(second)
    state = "gateway_breaker_state"
    assert value(found, state, deployment="demo/gpt-4", gateway_breaker_state="open") == 1
    assert value(found, state, deployment="demo/gpt-4", gateway_breaker_state="closed") == 1
    assert value(found, state, deployment="demo/gpt-4", gateway_breaker_state="half_open") == 0
    assert value(found, state, deployment="demo/gpt-3", gateway_breaker_state="half_open") == 1
    assert value(found, state, deployment="demo/gpt-3", gateway_breaker_state="open") == 0
    first.breaker_state("demo/gpt-4", "closed")  # the first worker's probe succeeded
    assert value(series(second), state, deployment="demo/gpt-4", gateway_breaker_state="open") == 0


def test_a_policy_change_takes_the_old_version_out_unless_a_worker_still_serves_it(worker: Worker) -> None:
    first = worker(other_live_pid())
    first.policy_loaded("aaa", 100.0)
    first.reload(ok=False, errors=3)
    second = worker(os.getpid())
    second.policy_loaded("aaa", 100.0)
    second.reload(ok=True)
    second.policy_loaded("bbb", 200.0)
    found = series(second)
    assert value(found, "gateway_policy_info", version="aaa") == 1  # the first worker has not reloaded yet
    assert value(found, "gateway_policy_info", version="bbb") == 1
    assert value(found, "gateway_policy_loaded_timestamp_seconds") == 200.0
    assert value(found, "gateway_policy_reload_errors") == 3
    assert value(found, "gateway_policy_reloads_total", outcome="failure") == 1
    assert value(found, "gateway_policy_reloads_total", outcome="success") == 1
    first.policy_loaded("bbb", 200.0)
    found = series(second)
    assert ("gateway_policy_info", frozenset({("version", "aaa")})) not in found  # no `0` series left either
    assert value(found, "gateway_policy_info", version="bbb") == 1
    assert value(found, "gateway_policy_reload_errors") == 0
    second.policy_loaded("aaa", 300.0)  # back to an earlier version: its series returns
    assert value(series(second), "gateway_policy_info", version="aaa") == 1


def test_the_quota_ratio_is_the_one_set_last_by_any_worker(worker: Worker) -> None:
    first = worker(other_live_pid())
    first.quota_level("day.tokens_per_day", "tokens_per_day", "token=demo", 0.9)
    second = worker(os.getpid())
    second.quota_level("day.tokens_per_day", "tokens_per_day", "token=demo", 0.05)  # a new day began
    assert value(series(first), "gateway_quota_used_ratio", limit="day.tokens_per_day", kind="tokens_per_day",
                 scope="token=demo") == 0.05


def test_an_exited_workers_gauges_stop_counting_and_its_counters_stay(worker: Worker, tmp_path: Path) -> None:
    gone = exited_pid()
    first = worker(gone)
    first.request("gpt-4", 200, "demo")
    first.breaker_state("demo/gpt-4", "open")
    first.policy_loaded("old", 100.0)
    second = worker(os.getpid())
    second.request("gpt-4", 200, "demo")
    second.breaker_state("demo/gpt-4", "closed")
    second.policy_loaded("new", 200.0)
    found = series(second)
    assert value(found, "gateway_requests_total", model="gpt-4", status="200", token="demo") == 2
    assert value(found, "gateway_breaker_state", deployment="demo/gpt-4", gateway_breaker_state="open") == 0
    assert value(found, "gateway_breaker_state", deployment="demo/gpt-4", gateway_breaker_state="closed") == 1
    assert ("gateway_policy_info", frozenset({("version", "old")})) not in found
    assert not list(tmp_path.glob(f"gauge_live*_{gone}.db"))
    assert list(tmp_path.glob(f"counter_{gone}.db"))
    assert forget_dead_workers(tmp_path) == []  # already forgotten


def test_a_directory_set_after_prometheus_client_was_imported_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shared_dir() is None
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(RuntimeError, match="before prometheus_client is imported"):
        GatewayMetrics()


def test_one_process_keeps_in_memory_values_and_its_own_registry() -> None:
    metrics = GatewayMetrics()
    assert not metrics.multiprocess and metrics.exposed is metrics.registry
    # prometheus_client's default mode: a quota gauge's `set` does not read the clock per request.
    assert metrics.quota_used._multiprocess_mode == "all"
    assert not metrics.quota_used._is_most_recent
