"""Server-sent events: reading a provider's stream and writing OpenAI-style events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from aiohttp.http_exceptions import LineTooLong

from sidecar.errors import GatewayError, ProviderError
from sidecar.providers.base import SSEEvent

DONE_EVENT = b"data: [DONE]\n\n"


class LineSource(Protocol):
    """An aiohttp StreamReader, or a wrapper that bounds each read (sidecar.deadlines)."""

    async def readline(self) -> bytes: ...


async def read_events(content: LineSource) -> AsyncIterator[SSEEvent]:
    """Yields events as they complete; comment lines (keepalives) are skipped."""
    data_lines: list[str] = []
    event_name: str | None = None
    while True:
        try:
            raw = await content.readline()
        except (ValueError, LineTooLong) as exc:  # a line longer than the reader's limit
            raise ProviderError("Provider sent an oversized stream line", code="bad_provider_stream") from exc
        if not raw:
            break
        line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
        if not line:
            if data_lines:
                yield SSEEvent("\n".join(data_lines), event_name)
            data_lines, event_name = [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data_lines.append(value)
        elif field == "event":
            event_name = value
    if data_lines:
        yield SSEEvent("\n".join(data_lines), event_name)


def data_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_event(error: GatewayError) -> bytes:
    """An OpenAI-style error in the stream; the caller follows it with `data: [DONE]`."""
    return b"data: " + error.body() + b"\n\n"
