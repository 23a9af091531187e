"""One real local detector per test module (tests/detector_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.detector_server import DetectorServer


@pytest.fixture(scope="module")
def detector() -> Iterator[DetectorServer]:
    server = DetectorServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_calls(detector: DetectorServer) -> None:
    detector.reset()
