"""Relaying the provider's answer to the client: whole completions and SSE streams.

Both paths stamp the client's model key and the request id, collect usage, and always end
cleanly: a failure before the first byte becomes a JSON error with its status; a failure after
it becomes an error event followed by `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import aiohttp
import orjson
from aiohttp import web

from sidecar.appkeys import SETTINGS
from sidecar.core.errors import GatewayError, ProviderError
from sidecar.core.failure_table import Phase
from sidecar.core.types import JSONDict
from sidecar.core.walk import completion_texts
from sidecar.forward.exchange import Exchange, OutputGuard, guard_chunks, release_chunks
from sidecar.forward.failures import NOT_STREAMED, PROVIDER_FAILURES, provider_failure
from sidecar.forward.sse import (
    DONE_EVENT,
    BufferedLines,
    EventParser,
    EventStreamResponse,
    data_events,
    error_event,
    oversized_line,
)
from sidecar.forward.stamping import ChunkStamper, flushed, guarded
from sidecar.forward.usage import ProviderUsage
from sidecar.responses import JSON_CONTENT_TYPE

log = logging.getLogger("sidecar.forwarding")
# Whole answers larger than this are checked by the output guardrails in a worker thread.
OFF_LOOP_COMPLETION_BYTES = 64 * 1024


@asynccontextmanager
async def whole_answer(
    send: AbstractAsyncContextManager[aiohttp.ClientResponse], exchange: Exchange
) -> AsyncIterator[bytes]:
    """Sends the attempt and yields the provider's whole 200 answer (bytes), its first byte timed; any
    other status raises the provider's error as the client gets it (`Exchange.answer_error`: a 429
    keeps its back-off headers), for chat and embeddings alike. The body runs inside the attempt, so
    what it raises is booked against the deployment."""
    async with send as upstream:
        payload = await upstream.read()
        exchange.first_byte = time.monotonic()
        if upstream.status != 200:
            raise exchange.answer_error(upstream.status, payload, upstream.headers)
        yield payload


async def relay_completion(
    send: AbstractAsyncContextManager[aiohttp.ClientResponse], exchange: Exchange
) -> web.Response:
    """Relays a whole chat.completion (OpenAI's shape, the client's model key); failures become JSON errors."""
    try:
        async with whole_answer(send, exchange) as payload:
            completion = _well_formed(exchange.provider.translate_response(_json_object(payload)))
        reports = ProviderUsage(exchange.decision.request_id, exchange.deployment.name)
        exchange.usage = reports.read(completion.get("usage"))
        exchange.completion_chars = _content_chars(completion)
        if exchange.guards and len(payload) > OFF_LOOP_COMPLETION_BYTES:
            # A large answer's output scan must not stall every other request on this loop.
            await asyncio.to_thread(_guard_completion, exchange.guards, completion)
        else:
            _guard_completion(exchange.guards, completion)
        for async_guard in exchange.async_guards:  # webhook guardrails: awaited on the loop, after the others
            await async_guard.check_completion(completion)
    except PROVIDER_FAILURES as exc:
        return exchange.fail(provider_failure(exc, Phase.ANSWER))
    completion["model"] = exchange.decision.model_key
    completion["request_id"] = exchange.decision.request_id
    exchange.status = 200
    return web.Response(body=orjson.dumps(completion), content_type=JSON_CONTENT_TYPE, headers=exchange.headers())


def _guard_completion(guards: list[OutputGuard], completion: JSONDict) -> None:
    for guard in guards:
        guard.on_completion(completion)


async def relay_stream(
    request: web.Request, send: AbstractAsyncContextManager[aiohttp.ClientResponse], exchange: Exchange
) -> web.StreamResponse:
    """Relays an SSE stream of chat.completion.chunk events ending with `data: [DONE]`; a late failure is an error
    event.
    """
    try:
        async with send as upstream:
            if upstream.status != 200:
                raise exchange.answer_error(upstream.status, await upstream.read(), upstream.headers)
            if upstream.content_type == JSON_CONTENT_TYPE:
                # Read whole by the attempt (forward.attempts): the client has no byte yet.
                raise _not_streamed(exchange, await upstream.read(), upstream.headers)
            response = EventStreamResponse(exchange.headers())
            await response.prepare(request)
            exchange.status = 200
            await _pump(upstream, response, exchange, request.app[SETTINGS].keepalive_seconds)
            return response
    except PROVIDER_FAILURES as exc:
        return exchange.fail(provider_failure(exc, Phase.ANSWER))


class _ClientGone(Exception):
    """Writing to the client failed: it left. Not the provider's fault, and nothing more to send."""


async def _write(response: EventStreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError is one too
        raise _ClientGone() from exc


async def _pump(upstream: aiohttp.ClientResponse, response: EventStreamResponse, exchange: Exchange,
                keepalive: float | None = None) -> None:
    """Relays events until the provider ends; any failure from here on ends the stream in-band.
    `keepalive`: seconds between `: ping` comments (None: none)."""
    pending = _Pending(response, exchange)  # events already in hand go out in one write (see _Pending)
    stream = _Stream(upstream, exchange, pending)
    if keepalive is not None:
        stream.lines.keep_alive(keepalive, response.ping)
    try:
        while not await stream.relay_next():
            await pending.flush()  # the next read may wait on the network: nothing waits with it
        pending.add_chunks(await release_chunks(exchange.async_guards, flushed(exchange.guards)), timed=False)
        pending.add(DONE_EVENT)
        await pending.finish()
    except _ClientGone:
        exchange.error = "client_disconnected"
        # Raised so the attempt closes the provider connection (the provider stops generating).
        raise asyncio.CancelledError() from None
    except PROVIDER_FAILURES as exc:
        error = provider_failure(exc, Phase.STREAM)
        exchange.error, exchange.fault = error.code or error.error_type, error
        before = pending.take()
        if isinstance(error, ProviderError):  # not a guard's own block: what the guards hold is clean so far
            before += await _released(exchange)
        await _end_with_error(response, error, before)
    except asyncio.CancelledError:
        exchange.error = "client_disconnected"
        raise
    finally:
        stream.lines.close()  # no keepalive after the end
        exchange.usage = stream.stamper.usage
        exchange.completion_chars = stream.stamper.completion_chars
    response.stop_streaming()


class _Stream:
    """The provider side of one stream: its lines in, stamped and guarded chunks into `pending`."""

    def __init__(self, upstream: aiohttp.ClientResponse, exchange: Exchange, pending: _Pending) -> None:
        self._exchange = exchange
        self._source = BufferedLines(upstream.content)
        self.lines = exchange.watch.lines(self._source)
        self._parser = EventParser()
        self._translator = exchange.provider.stream_translator()
        self.stamper = ChunkStamper(exchange)
        self._pending = pending

    async def relay_next(self) -> bool:
        """Relays the events of the lines the next network read completes (parsed in one go: one
        await per read, not per line); True once the provider finished. Raises ProviderError when
        the stream ends before that. The last chunk dies with this call's locals: an open stream
        holds none while it waits for the next read."""
        try:
            batch = await self.lines.read(self._source.read_lines)
        except ValueError as exc:  # a line longer than BufferedLines takes
            raise oversized_line() from exc
        exchange, pending = self._exchange, self._pending
        for event in self._parser.feed(batch) if batch else self._parser.end():
            for chunk in self._translator.feed(event):
                stamped = guarded(exchange.guards, self.stamper.stamp(chunk))
                if exchange.async_guards:
                    pending.add_chunks(await guard_chunks(exchange.async_guards, stamped))
                    await pending.flush()  # the next chunk's webhook call must not hold these back
                else:
                    pending.add_chunks(stamped)
            if self._translator.done:
                return True
        if not batch:
            raise ProviderError("Provider closed the stream before it finished", code="stream_truncated")
        return False


class _Pending:
    """Events the relay holds while the next one is already read: one write (one syscall, one
    chunk for Envoy to relay) for a burst instead of one per event. The relay flushes before
    any read that may wait on the network, so no event waits for the provider's next token."""

    def __init__(self, response: EventStreamResponse, exchange: Exchange) -> None:
        self._response = response
        self._exchange = exchange
        self._parts: list[bytes] = []

    def add(self, data: bytes) -> None:
        self._parts.append(data)

    def add_chunks(self, chunks: list[JSONDict], timed: bool = True) -> None:
        """Chunks for the client, as `data:` events; the first `timed` one marks the time to first token
        (what the guards release at the end does not)."""
        if chunks:
            if timed and not self._exchange.first_byte:
                self._exchange.first_byte = time.monotonic()
            self._parts.append(data_events(chunks))

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data

    async def flush(self) -> None:
        if self._parts:
            await _write(self._response, self.take())

    async def finish(self) -> None:
        """The last events and the end of the chunked answer in one write (one syscall, not two)."""
        try:
            await self._response.write_eof(self.take())
        except ConnectionResetError as exc:
            raise _ClientGone() from exc


async def _released(exchange: Exchange) -> bytes:
    """The provider failed mid-stream: the text the output guards still hold back is final, so
    they finish their windows (scanned and masked like any end of stream) and it goes out before
    the error event. A guard that blocks it, or whose detector fails, releases nothing."""
    try:
        chunks = await release_chunks(exchange.async_guards, flushed(exchange.guards))
    except PROVIDER_FAILURES as exc:
        log.info("held-back text dropped at a provider error", extra={"fields": {
            "request_id": exchange.decision.request_id, "reason": type(exc).__name__}})
        return b""
    return data_events(chunks)


def _not_streamed(exchange: Exchange, payload: bytes, headers: Mapping[str, str]) -> ProviderError:
    """A stream request the provider answered 200 with a JSON body: an error object is the
    provider's error (mapped as its error answers are, as a 502); anything else (a whole
    completion) is a provider that did not stream."""
    try:
        answer = orjson.loads(payload)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        return exchange.answer_error(502, payload, headers)
    return ProviderError("Provider answered the stream request with a whole JSON answer, not an event stream",
                         code=NOT_STREAMED)


async def _end_with_error(response: EventStreamResponse, error: GatewayError, before: bytes = b"") -> None:
    # A client that left too changes nothing: the exchange is already booked as the provider's failure.
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof(before + error_event(error) + DONE_EVENT)  # one write, the end included


def _well_formed(completion: JSONDict) -> JSONDict:
    """Choices the relay and the output guards can read; anything else is the provider's fault (502)."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not all(
            isinstance(c, dict) and isinstance(c.get("message") or {}, dict) for c in choices):
        raise ProviderError("Provider returned a malformed completion", code="bad_provider_response")
    return completion


def _content_chars(completion: JSONDict) -> int:
    """Characters of answer text (every text the exchange walker yields: content, tool-call
    arguments, reasoning, refusal), for estimating usage when a provider reports none."""
    return sum(len(text.text) for text in completion_texts(completion))


def _json_object(payload: bytes) -> JSONDict:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderError("Provider returned a response that is not JSON", code="bad_provider_response") from None
    if not isinstance(value, dict):
        raise ProviderError("Provider returned a response that is not a JSON object", code="bad_provider_response")
    return value
