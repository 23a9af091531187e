"""`worker`: GatewayMetrics in prometheus_client's multiprocess mode, as one of several sidecar workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import values

from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.features.observability.multiprocess import MULTIPROC_ENV

Worker = Callable[[int], GatewayMetrics]


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """`worker(pid)`: a GatewayMetrics whose values go to files in tmp_path under `pid`, as worker
    process `pid`'s would (prometheus_client picks its value class when imported; its own tests
    swap it the same way). A labelled series takes the value class current when it is first
    recorded, so a test records everything of one worker before it starts the next."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))

    def start(pid: int) -> GatewayMetrics:
        value_class = values.MultiProcessValue(lambda: pid)  # type: ignore[no-untyped-call]
        monkeypatch.setattr(values, "ValueClass", value_class)
        return GatewayMetrics()

    yield start
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]
