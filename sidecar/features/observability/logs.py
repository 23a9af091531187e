"""Structured JSON logs, one object per line, on stdout."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TextIO

import orjson

# ".000Z" … ".999Z": a line's milliseconds are looked up, not formatted.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))

class JSONFormatter(logging.Formatter):
    """One JSON object per log line: time (UTC, ms), level, logger, msg, plus the record's `fields`."""

    # Every request logs a line per hop: the formatted second is reused until the clock moves on.
    _second: int = -1
    _second_text: str = ""

    def _time(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        ms = int(msecs)
        return self._second_text + (_MILLIS[ms] if 0 <= ms < 1000 else f".{ms:03d}Z")

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line (`exc` holds a traceback when there is one)."""
        entry: dict[str, object] = {
            "time": self._time(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class JSONLineHandler(logging.StreamHandler[TextIO]):
    """Writes each record as a line; on an event loop's thread the stream is flushed once per loop iteration.

    A flush is a write system call: under load one iteration logs many lines (a decision and an
    access line per request), so they leave in one call, as soon as the iteration's callbacks
    have run. Off the loop (startup, other threads, the CLI) every line is flushed at once, and so
    is a warning or an error anywhere: it may precede a crash.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on

    def emit(self, record: logging.LogRecord) -> None:
        """Writes the formatted record and schedules (or does) the flush; errors go to `handleError`."""
        try:
            self.stream.write(self.format(record) + "\n")
            self._flush_soon(record)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _flush_soon(self, record: logging.LogRecord) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or record.levelno >= logging.WARNING:
            self.flush()
            return
        # Compared by identity: a flush scheduled on a loop that stopped for good is not waited for.
        if self._flush_on is not loop:
            self._flush_on = loop
            loop.call_soon(self._scheduled_flush, record)

    def _scheduled_flush(self, record: logging.LogRecord) -> None:
        self._flush_on = None
        try:
            self.flush()
        except Exception:
            # As a failed flush in `emit` would be: reported (stderr), never raised into the loop, where
            # the loop's own error line would be logged, flushed, fail, and so on every iteration.
            self.handleError(record)


def setup_logging(level: str = "INFO") -> None:
    """JSON logs on stdout at `level`; aiohttp's access log is quieted (ours carries the request id)."""
    # Our lines never show the thread, process or multiprocessing name, nor the caller's file and
    # line: skip collecting them (the logging HOWTO's "Optimization"; the caller costs a stack walk).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    handler = JSONLineHandler(sys.stdout)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log repeats ours without the request id.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
