"""Fixture loading for the provider translation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from sidecar.core.types import SSEEvent
from sidecar.providers.base import StreamTranslator

FIXTURES = Path(__file__).parent / "fixtures"

# A fixed clock so `created` is exact in assertions.
NOW = 1_732_540_000


def fixed_clock() -> float:
    return float(NOW)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return orjson.loads(fixture_bytes(name))


def sse_events(name: str) -> list[SSEEvent]:
    """Split a recorded SSE file into events the way the forwarding path does (blank-line framed)."""
    events = []
    for frame in (FIXTURES / name).read_text(encoding="utf-8").split("\n\n"):
        event: str | None = None
        data: list[str] = []
        for line in frame.splitlines():
            if line.startswith("event:"):
                event = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].removeprefix(" "))
        if data:
            events.append(SSEEvent(data="\n".join(data), event=event))
    return events


def feed_all(translator: StreamTranslator, events: list[SSEEvent]) -> list[tuple[str | None, dict[str, Any]]]:
    """Every chunk paired with the name of the event that produced it (to prove nothing is buffered)."""
    return [(event.event, chunk) for event in events for chunk in translator.feed(event)]
