"""One /metrics for several sidecar workers: prometheus_client's multiprocess mode.

With `GATEWAY_SIDECAR_WORKERS=N` > 1 the parent process sets PROMETHEUS_MULTIPROC_DIR to a fresh
private directory before prometheus_client is imported (sidecar/cli/workers.py, `share_metrics`)
and every worker inherits it. prometheus_client then keeps each metric value in a per-process
mmap file there (`counter_<pid>.db`, `gauge_livemax_<pid>.db`, …) instead of in memory, and the
worker Prometheus happens to reach renders the sum over all of them (`PodCollector`). With one
process (the default) none of this is used: values stay in memory, as prometheus_client does by
default. See https://prometheus.github.io/client_python/multiprocess/ for the library's rules
(no Enum or Info; gauges say how workers' values combine).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The info-style series whose 0 values are left out: a worker sets its old policy version to 0 (a
# value written to a worker's file stays there), where one process removes the series.
_INFO_SERIES = frozenset({"gateway_policy_info"})


def shared_dir() -> Path | None:
    """The directory all workers' metric files live in when prometheus_client runs in multiprocess
    mode (PROMETHEUS_MULTIPROC_DIR was set when it was imported), else None.

    Raises RuntimeError when the variable is set but prometheus_client was imported before it
    (in-memory values: this worker's numbers would never reach the shared files).
    """
    path = os.environ.get(MULTIPROC_ENV)
    multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
    if multiprocess != bool(path):
        raise RuntimeError(f"{MULTIPROC_ENV} must be set before prometheus_client is imported "
                           f"({MULTIPROC_ENV}={path!r}, multiprocess values: {multiprocess})")
    return Path(path) if path else None


class PodCollector:
    """Collects every worker's metric files in `path` into one set of series: counters and
    histograms summed, gauges combined by their `multiprocess_mode`, no `pid` label.

    Before each collection the `live*` gauge files of workers that are gone are removed
    (prometheus_client's `mark_process_dead`), so a crashed worker's breaker states stop counting.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        # prometheus_client.multiprocess has no annotations, hence the ignores in this module.
        self._files = MultiProcessCollector(None, str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        """The summed series (prometheus_client Metric families), as /metrics renders them."""
        forget_dead_workers(self._path)
        metrics: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]
        for metric in metrics:
            if metric.name in _INFO_SERIES:
                metric.samples = [sample for sample in metric.samples if sample.value != 0]
            yield metric


def forget_dead_workers(path: Path) -> list[int]:
    """Removes the live-gauge files of processes that no longer run; returns their pids."""
    dead: list[int] = []
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = Path(name).stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)) and int(pid) not in dead:
            # Its live gauges (breaker states, policy version, quota ratios, reload errors) no
            # longer count; its counters and histograms do (prometheus_client's mark_process_dead).
            mark_process_dead(int(pid), str(path))  # type: ignore[no-untyped-call]
            dead.append(int(pid))
    return dead


def _running(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, exited but not yet waited for by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux): trust the signal check
        return True
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"
