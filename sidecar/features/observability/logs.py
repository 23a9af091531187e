"""Structured JSON logs, one object per line, on stdout."""

from __future__ import annotations

import logging
import sys
import time

import orjson


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
        return f"{self._second_text}.{int(msecs):03d}Z"

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


def setup_logging(level: str = "INFO") -> None:
    """JSON logs on stdout at `level`; aiohttp's access log is quieted (ours carries the request id)."""
    # Our lines never show the thread, process or multiprocessing name: skip collecting them.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log repeats ours without the request id.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
