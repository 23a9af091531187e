"""Server-sent events: reading a provider's stream and writing OpenAI-style events.

The framing follows the WHATWG HTML standard's server-sent events (`event:`/`data:` fields, a blank
line ends an event, `:` starts a comment); the payloads follow OpenAI's Chat Completions streaming
reference (`chat.completion.chunk` objects, then `data: [DONE]`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import LineTooLong

from sidecar.core.errors import GatewayError, ProviderError
from sidecar.core.types import SSEEvent

DONE_EVENT = b"data: [DONE]\n\n"
PING_COMMENT = b": ping\n\n"  # the keepalive comment aiohttp-sse's EventSourceResponse sent (sep="\n")
# A write the client does not take within this long aborts the connection (aiohttp-sse's default).
SEND_TIMEOUT_SECONDS = 120.0
_TCP_USER_TIMEOUT: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)


class LineSource(Protocol):
    """An aiohttp StreamReader, or a wrapper that bounds each read (sidecar.forward.deadlines)."""

    async def readline(self) -> bytes: ...


async def read_events(content: LineSource) -> AsyncIterator[SSEEvent]:
    """Yields events as they complete, a line at a time (the relay feeds whole batches of lines
    to an `EventParser` instead); comment lines (keepalives) are skipped."""
    parser = EventParser()
    while True:
        try:
            raw = await content.readline()
        except (ValueError, LineTooLong) as exc:  # a line longer than the reader's limit
            raise oversized_line() from exc
        if not raw:
            break
        for event in parser.feed((raw,)):
            yield event
    for event in parser.end():
        yield event


def oversized_line() -> ProviderError:
    """The provider sent a line longer than the reader takes (a bad stream, not a timeout)."""
    return ProviderError("Provider sent an oversized stream line", code="bad_provider_stream")


class EventParser:
    """SSE framing over lines (each with or without its line break): the events they complete.

    Synchronous, so the relay parses every line a network read brought in one call instead of
    an await (an async generator step) per line.
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self._name: str | None = None

    def feed(self, lines: Iterable[bytes]) -> list[SSEEvent]:
        """The events the given lines complete, in order; an event's lines may span calls."""
        events: list[SSEEvent] = []
        for raw in lines:
            if raw.startswith(b"data: "):  # the usual line: decoding the value alone is the same
                self._data.append(raw[6:].rstrip(b"\r\n").decode("utf-8", errors="replace"))
                continue
            stripped = raw.rstrip(b"\r\n")
            if not stripped:  # a blank line ends the event
                if self._data:
                    events.append(SSEEvent("\n".join(self._data), self._name))
                self._data, self._name = [], None
                continue
            line = stripped.decode("utf-8", errors="replace")
            if not line.startswith(":"):  # a comment (keepalive) is skipped
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    self._data.append(value)
                elif field == "event":
                    self._name = value
        return events

    def end(self) -> list[SSEEvent]:
        """The stream ended: the last event, when its closing blank line never came."""
        events = [SSEEvent("\n".join(self._data), self._name)] if self._data else []
        self._data, self._name = [], None
        return events


def data_event(payload: dict[str, Any]) -> bytes:
    """One SSE `data:` event holding `payload` as JSON (WHATWG server-sent events)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def data_events(payloads: list[dict[str, Any]]) -> bytes:
    """`data_event` of each payload, concatenated (one join, no Python call per payload); b"" for none."""
    return b"data: " + b"\n\ndata: ".join(map(orjson.dumps, payloads)) + b"\n\n" if payloads else b""


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
    `make bench` measured the difference in sidecar CPU per stream. `readline()`'s lines keep
    their b"\n", so a blank line is never mistaken for the end of the stream (b"");
    `read_lines()` hands over a whole batch at once.
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
            self._lines = [part + b"\n" for part in self._split(chunk)]
            self._next = 0
        line = self._lines[self._next]
        self._next += 1
        return line

    async def read_lines(self) -> list[bytes]:
        """The lines still buffered, else those of the next network reads (at least one), WITHOUT
        their b"\\n" (the last line of the stream may lack it anyway); [] at the end of the stream.

        One await per network read: the relay parses a whole batch at once (`EventParser`)."""
        if self._next < len(self._lines):
            lines = [line.removesuffix(b"\n") for line in self._lines[self._next:]]
            self._lines, self._next = [], 0
            return lines
        while True:
            chunk = await self._content.readany()
            if not chunk:
                line, self._partial = self._partial, b""
                return [line] if line else []
            lines = self._split(chunk)
            if lines:
                return lines

    def _split(self, chunk: bytes) -> list[bytes]:
        """The complete lines `chunk` ends (no b"\\n"); the unterminated rest waits for the next chunk."""
        data = self._partial + chunk if self._partial else chunk
        parts = data.split(b"\n")
        self._partial = parts.pop()
        if len(data) > self._max_line:
            self._check_lengths(parts)
        return parts

    def _check_lengths(self, parts: list[bytes]) -> None:
        if len(self._partial) > self._max_line or any(len(p) >= self._max_line for p in parts):
            # The same signal as StreamReader.readline's: read_events reports a bad stream.
            raise ValueError("stream line too long")


class EventStreamResponse(web.StreamResponse):
    """An SSE answer with the headers and socket settings of aiohttp-sse's EventSourceResponse,
    but no ping task per stream: the relay's stream timer (deadlines.TimedLines) calls `ping()`
    when a keepalive is due, so an open stream costs no task, coroutine and sleep of its own.
    """

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__(status=200)
        self.headers.extend(headers)
        self.headers["Content-Type"] = "text/event-stream"
        self.headers["Cache-Control"] = "no-cache"
        self.headers["Connection"] = "keep-alive"
        self.headers["X-Accel-Buffering"] = "no"
        self._request: web.BaseRequest | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._pinging = True
        self._tcp_sock: socket.socket | None = None
        self._saved_tcp_user_timeout: int | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Sends the headers (chunked encoding)."""
        if self.prepared:
            return await super().prepare(request)
        self._request = request
        self._set_tcp_user_timeout(request)
        writer = await super().prepare(request)
        self.enable_chunked_encoding()
        return writer

    def ping(self) -> None:
        """Writes a keepalive comment (in a task of its own: the caller is a timer callback)."""
        if self._pinging and (self._ping_task is None or self._ping_task.done()):
            self._ping_task = asyncio.get_running_loop().create_task(self._send_ping())

    def stop_streaming(self) -> None:
        """No more keepalives: the stream is over."""
        self._pinging = False
        if self._ping_task is not None:
            self._ping_task.cancel()
            self._ping_task = None

    async def write_eof(self, data: bytes = b"") -> None:
        """Ends the answer; the socket gets its own TCP_USER_TIMEOUT back (it may serve other requests)."""
        await super().write_eof(data)
        self._restore_tcp_user_timeout()

    async def _send_ping(self) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await self.write(PING_COMMENT)
        except TimeoutError:  # a stalled client never drains: a graceful close would hang too
            self._pinging = False
            transport = self._request.transport if self._request is not None else None
            if transport is not None:
                transport.abort()
        except (ConnectionResetError, RuntimeError):  # the client left, or the answer already ended
            self._pinging = False

    def _set_tcp_user_timeout(self, request: web.BaseRequest) -> None:
        """The kernel aborts the connection when written data stays unacknowledged for the send
        timeout: a hung client is noticed long before its buffers fill (as EventSourceResponse)."""
        if _TCP_USER_TIMEOUT is None or request.transport is None:
            return
        sock = request.transport.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        self._saved_tcp_user_timeout = sock.getsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT)
        self._tcp_sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, int(SEND_TIMEOUT_SECONDS * 1000))

    def _restore_tcp_user_timeout(self) -> None:
        if self._tcp_sock is None or self._saved_tcp_user_timeout is None or _TCP_USER_TIMEOUT is None:
            return
        if self._tcp_sock.fileno() >= 0:  # not restorable once the socket is closed
            self._tcp_sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, self._saved_tcp_user_timeout)
        self._tcp_sock = self._saved_tcp_user_timeout = None
