"""Relaying the provider's answer to the client: whole completions and SSE streams.

Both paths stamp the client's model key and the request id, collect usage, and always end
cleanly: a failure before the first byte becomes a JSON error with its status; a failure after
it becomes an error event followed by `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from sidecar.appkeys import SETTINGS
from sidecar.core.errors import GatewayError, ProviderError
from sidecar.core.failure_table import Phase
from sidecar.core.types import JSONDict, Usage
from sidecar.core.walk import ANSWER_STRING_FIELDS, chunk_texts, completion_texts
from sidecar.forward.exchange import Exchange, OutputGuard, guard_chunks, release_chunks
from sidecar.forward.failures import PROVIDER_FAILURES, provider_failure
from sidecar.forward.sse import (
    DONE_EVENT,
    BufferedLines,
    EventParser,
    EventStreamResponse,
    data_event,
    error_event,
    oversized_line,
)
from sidecar.responses import JSON_CONTENT_TYPE

# The delta members whose string values are answer text (core.walk's), for counting it.
_TEXT_FIELDS = frozenset(field.value for field in ANSWER_STRING_FIELDS)
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
        exchange.usage = usage_of(completion.get("usage"))
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
    relay = _ChunkStamper(exchange)
    translator = exchange.provider.stream_translator()
    source = BufferedLines(upstream.content)
    parser = EventParser()
    lines = exchange.watch.lines(source)
    if keepalive is not None:
        lines.keep_alive(keepalive, response.ping)
    pending = _Pending(response, exchange)  # events already in hand go out in one write (see _Pending)
    try:
        done = False
        while not done:
            try:  # every line the next network read completes: parsed in one go, one await per read
                batch = await lines.read(source.read_lines)
            except ValueError as exc:  # a line longer than BufferedLines takes
                raise oversized_line() from exc
            for event in parser.feed(batch) if batch else parser.end():
                for chunk in translator.feed(event):
                    stamped = _guarded(exchange.guards, relay.stamp(chunk))
                    if exchange.async_guards:
                        pending.add_chunks(await guard_chunks(exchange.async_guards, stamped))
                        await pending.flush()  # the next chunk's webhook call must not hold these back
                    else:
                        pending.add_chunks(stamped)
                done = translator.done
                if done:
                    break
            if not batch:
                break
            if not done:
                await pending.flush()  # the next read may wait on the network: nothing waits with it
        if not done:
            raise ProviderError("Provider closed the stream before it finished", code="stream_truncated")
        pending.add_chunks(await release_chunks(exchange.async_guards, _flushed(exchange.guards)), timed=False)
        pending.add(DONE_EVENT)
        await pending.flush()
    except _ClientGone:
        exchange.error = "client_disconnected"
        # Raised so the attempt closes the provider connection (the provider stops generating).
        raise asyncio.CancelledError() from None
    except PROVIDER_FAILURES as exc:
        error = provider_failure(exc, Phase.STREAM)
        exchange.error, exchange.fault = error.code or error.error_type, error
        await _end_with_error(response, error, pending.take())
    except asyncio.CancelledError:
        exchange.error = "client_disconnected"
        raise
    finally:
        lines.close()  # no keepalive after the end
        exchange.usage = relay.usage
        exchange.completion_chars = relay.completion_chars
    response.stop_streaming()


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
            self._parts.extend(data_event(chunk) for chunk in chunks)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data

    async def flush(self) -> None:
        if self._parts:
            await _write(self._response, self.take())


async def _end_with_error(response: EventStreamResponse, error: GatewayError, before: bytes = b"") -> None:
    try:
        await response.write(before + error_event(error))
        await response.write(DONE_EVENT)
    except ConnectionResetError:
        pass  # the client left too; the exchange is already booked as the provider's failure


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


class _ChunkStamper:
    """Gives chunks the client's model key, sends the role delta first, strips unasked usage."""

    def __init__(self, exchange: Exchange) -> None:
        self._model = exchange.decision.model_key
        self._wants_usage = exchange.decision.client_wants_usage
        self._roles_sent: set[int] = set()  # choice indexes (n > 1 streams interleave choices)
        self.usage: Usage | None = None
        self.completion_chars = 0

    def stamp(self, chunk: JSONDict) -> list[JSONDict]:
        """`chunk` stamped (in place), after the role chunk of any choice not seen before; none for
        a usage-only chunk the client did not ask for."""
        chunk["model"] = self._model
        chunk.setdefault("object", "chat.completion.chunk")
        if "usage" in chunk:
            if chunk["usage"]:
                self.usage = usage_of(chunk["usage"])
                if not self._wants_usage:
                    if not chunk.get("choices"):
                        return []
                    del chunk["usage"]
            elif not self._wants_usage:
                del chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return [chunk]
        out = []
        chars, calls = 0, False
        for choice in choices:
            delta = choice.get("delta") or {}
            index = choice.get("index", 0)
            if index not in self._roles_sent:
                self._roles_sent.add(index)
                if "role" not in delta:
                    out.append(self._role_chunk(chunk, index))
            if isinstance(delta, dict):
                # What core.walk.chunk_texts yields, counted without building its Texts (every chunk).
                for name, value in delta.items():
                    if name in _TEXT_FIELDS and isinstance(value, str):
                        chars += len(value)
                calls = calls or "tool_calls" in delta or "function_call" in delta
        if calls or not isinstance(choices, list):
            chars = sum(len(text.text) for text in chunk_texts(chunk))
        self.completion_chars += chars
        out.append(chunk)
        return out

    def _role_chunk(self, like: JSONDict, index: int) -> JSONDict:
        return {
            "id": like.get("id"), "object": "chat.completion.chunk", "created": like.get("created"),
            "model": self._model,
            "choices": [{"index": index, "delta": {"role": "assistant"}, "finish_reason": None}],
        }


def _guarded(guards: list[OutputGuard], chunks: list[JSONDict]) -> list[JSONDict]:
    for guard in guards:
        chunks = [out for chunk in chunks for out in guard.on_chunk(chunk)]
    return chunks


def _flushed(guards: list[OutputGuard]) -> list[JSONDict]:
    """At the end each guard first sees what the guards before it released, then releases its own."""
    pending: list[JSONDict] = []
    for guard in guards:
        pending = [out for chunk in pending for out in guard.on_chunk(chunk)] + guard.on_end()
    return pending


def usage_of(value: Any) -> Usage | None:
    """A provider's `usage` object as Usage, or None when it lacks integer prompt/completion tokens."""
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


def _json_object(payload: bytes) -> JSONDict:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderError("Provider returned a response that is not JSON", code="bad_provider_response") from None
    if not isinstance(value, dict):
        raise ProviderError("Provider returned a response that is not a JSON object", code="bad_provider_response")
    return value
