"""Server-sent events: reading a provider's stream and writing OpenAI-style events.

The framing follows the WHATWG HTML standard's server-sent events (`event:`/`data:` fields, a blank
line ends an event, `:` starts a comment); the payloads follow OpenAI's Chat Completions streaming
reference (`chat.completion.chunk` objects, then `data: [DONE]`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from aiohttp.http_exceptions import LineTooLong

from sidecar.core.errors import GatewayError, ProviderError
from sidecar.core.types import SSEEvent

DONE_EVENT = b"data: [DONE]\n\n"


class LineSource(Protocol):
    """An aiohttp StreamReader, or a wrapper that bounds each read (sidecar.forward.deadlines)."""

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
    """One SSE `data:` event holding `payload` as JSON (WHATWG server-sent events)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_event(error: GatewayError) -> bytes:
    """An OpenAI-style error in the stream; the caller follows it with `data: [DONE]`."""
    return b"data: " + error.body() + b"\n\n"


class ChunkSource(Protocol):
    """What BufferedLines reads: an aiohttp StreamReader's `readany()` (b"" at the end)."""

    async def readany(self) -> bytes: ...


# aiohttp's own readline() limit for a client response (twice its 64 KiB read buffer).
MAX_LINE_BYTES = 128 * 1024


class BufferedLines:
    """A provider stream's lines, read a network chunk at a time.

    aiohttp's readline() searches for the newline in Python, one await per line (two per SSE
    event); taking whatever has arrived and splitting it in C costs one await per chunk.
    `make bench` measured the difference in sidecar CPU per stream. Lines keep their b"\n",
    so a blank line is never mistaken for the end of the stream (b"").
    """

    def __init__(self, content: ChunkSource, max_line: int = MAX_LINE_BYTES) -> None:
        self._content = content
        self._max_line = max_line
        self._lines: list[bytes] = []
        self._next = 0
        self._partial = b""

    async def readline(self) -> bytes:
        """The next line with its b"\\n" (the last one may lack it); b"" at the end of the stream."""
        while self._next >= len(self._lines):
            chunk = await self._content.readany()
            if not chunk:
                line, self._partial = self._partial, b""
                return line
            data = self._partial + chunk
            parts = data.split(b"\n")
            self._partial = parts.pop()
            if len(data) > self._max_line:
                self._check_lengths(parts)
            self._lines = [part + b"\n" for part in parts]
            self._next = 0
        line = self._lines[self._next]
        self._next += 1
        return line

    def event_ready(self) -> bool:
        """Whether the lines already read hold a whole event (a data line, then a blank line): the
        next event then comes without waiting on the network, so the relay may write both at once."""
        seen_data = False
        for index in range(self._next, len(self._lines)):
            line = self._lines[index]
            if line in (b"\n", b"\r\n"):
                if seen_data:
                    return True
            elif not line.startswith(b":"):
                seen_data = True
        return False

    def _check_lengths(self, parts: list[bytes]) -> None:
        if len(self._partial) > self._max_line or any(len(p) >= self._max_line for p in parts):
            # The same signal as StreamReader.readline's: read_events reports a bad stream.
            raise ValueError("stream line too long")
