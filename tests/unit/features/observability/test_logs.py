"""The JSON log line: its timestamp stays exact across seconds although the second is reused; the handler's
flushes (once per line off the event loop, once per loop iteration on it)."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson
import pytest

from sidecar.features.observability.logs import JSONFormatter, JSONLineHandler


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


class Stream(io.StringIO):
    """Counts flushes, and what had been written when each happened."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def _handler(stream: Stream) -> tuple[JSONLineHandler, logging.Logger]:
    handler = JSONLineHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(f"tests.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate, logger.level = False, logging.INFO
    return handler, logger


def test_lines_off_the_event_loop_are_flushed_at_once() -> None:
    stream = Stream()
    _, logger = _handler(stream)
    logger.info("one", extra={"fields": {"n": 1}})
    logger.warning("two %s", "args")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["msg"], line["level"]) for line in lines] == [("one", "info"), ("two args", "warning")]
    assert lines[0]["n"] == 1
    assert stream.flushed == [stream.getvalue().split("\n", 1)[0] + "\n", stream.getvalue()]


async def test_lines_on_the_loop_leave_in_one_flush_once_the_iteration_ends() -> None:
    stream = Stream()
    _, logger = _handler(stream)
    for n in range(3):
        logger.info("line", extra={"fields": {"n": n}})
    assert stream.flushed == [], "written, not yet flushed"
    await asyncio.sleep(0)
    assert stream.flushed == [stream.getvalue()] and stream.getvalue().count("\n") == 3
    logger.info("again")
    await asyncio.sleep(0)
    assert len(stream.flushed) == 2 and stream.flushed[-1].endswith('"msg":"again"}\n')
    logger.warning("a warning may precede a crash")
    assert len(stream.flushed) == 3 and stream.flushed[-1] == stream.getvalue(), "flushed at once"


def test_a_flush_left_on_a_closed_loop_does_not_hold_back_later_lines() -> None:
    stream = Stream()
    _, logger = _handler(stream)

    async def log_and_stop() -> None:
        asyncio.get_running_loop().stop()  # this iteration is the loop's last: the flush never runs
        logger.info("on a loop that stops")

    async def log() -> None:
        logger.info("on a new loop")
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(log_and_stop())
    loop.close()
    assert stream.flushed == [] and stream.getvalue().count("\n") == 1
    asyncio.run(log())
    assert stream.flushed == [stream.getvalue()] and stream.getvalue().count("\n") == 2
    logger.info("off any loop")
    assert stream.flushed[-1] == stream.getvalue() and stream.getvalue().count("\n") == 3


def test_a_line_is_the_formatter_output_and_exceptions_are_kept() -> None:
    stream = Stream()
    handler, logger = _handler(stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed", extra={"fields": {"request_id": "r"}})
    (line,) = stream.getvalue().splitlines()
    parsed = orjson.loads(line)
    assert parsed["msg"] == "failed" and parsed["level"] == "error" and parsed["request_id"] == "r"
    assert "ValueError: boom" in parsed["exc"]
    assert list(parsed)[:4] == ["time", "level", "logger", "msg"]
    assert handler.formatter is not None


class BrokenStream(Stream):
    def flush(self) -> None:
        raise BrokenPipeError("stdout is gone")


async def test_a_failed_flush_is_reported_not_raised_into_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    handler, logger = _handler(BrokenStream())
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", reported.append)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    logger.info("first")
    logger.info("second")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert errors == [] and [r.getMessage() for r in reported] == ["first"]
