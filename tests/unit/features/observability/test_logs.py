"""The JSON log line: its timestamp stays exact across seconds although the second is reused."""

from __future__ import annotations

import logging

import orjson

from sidecar.features.observability.logs import JSONFormatter


def _line(formatter: JSONFormatter, created: float) -> dict[str, object]:
    record = logging.LogRecord("sidecar.decision", logging.INFO, __file__, 1, "decision", (), None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.fields = {"request_id": "req_1", "status": 200}
    parsed: dict[str, object] = orjson.loads(formatter.format(record))
    return parsed


def test_timestamps_across_seconds_and_days() -> None:
    formatter = JSONFormatter()
    times = [_line(formatter, t)["time"] for t in (1_764_460_799.5, 1_764_460_799.75, 1_764_460_800.125, 5.0)]
    assert times == ["2025-11-29T23:59:59.500Z", "2025-11-29T23:59:59.750Z", "2025-11-30T00:00:00.125Z",
                     "1970-01-01T00:00:05.000Z"]
    line = _line(formatter, 1_764_460_799.5)
    assert (line["level"], line["logger"], line["msg"], line["request_id"], line["status"]) == (
        "info", "sidecar.decision", "decision", "req_1", 200)
