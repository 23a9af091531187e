"""sse.read_events against a real aiohttp StreamReader: framing, names, comments, CRLF."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

import orjson
import pytest
from aiohttp import StreamReader, web
from aiohttp.test_utils import TestClient
from aiohttp_sse import EventSourceResponse

from sidecar.core.errors import InvalidRequest, ProviderError
from sidecar.core.types import SSEEvent
from sidecar.forward.sse import DONE_EVENT, PING_COMMENT, EventStreamResponse, data_event, error_event, read_events
from sidecar.providers.openai_compat import OpenAIStreamTranslator


def reader(*chunks: bytes, limit: int = 2**16) -> StreamReader:
    stream = StreamReader(mock.Mock(_reading_paused=False), limit)
    for chunk in chunks:
        stream.feed_data(chunk)
    stream.feed_eof()
    return stream


async def events(*chunks: bytes, limit: int = 2**16) -> list[SSEEvent]:
    return [event async for event in read_events(reader(*chunks, limit=limit))]


async def test_single_data_events() -> None:
    assert await events(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [SSEEvent('{"a":1}'), SSEEvent("[DONE]")]


async def test_multi_line_data_is_joined_with_newlines() -> None:
    assert await events(b"data: first\ndata: second\ndata:third\n\n") == [SSEEvent("first\nsecond\nthird")]


async def test_event_names() -> None:
    raw = b"event: message_start\ndata: {}\n\nevent: ping\ndata: {}\n\ndata: plain\n\n"
    assert await events(raw) == [
        SSEEvent("{}", "message_start"), SSEEvent("{}", "ping"), SSEEvent("plain", None),
    ]


async def test_event_name_does_not_leak_into_the_next_event() -> None:
    assert await events(b"event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent("1", "a"), SSEEvent("2")]


async def test_comments_are_skipped() -> None:
    raw = b": keepalive\n\n:another\ndata: x\n: mid-event comment\ndata: y\n\n"
    assert await events(raw) == [SSEEvent("x\ny")]


async def test_blank_lines_without_data_yield_nothing() -> None:
    assert await events(b"\n\n\nevent: lonely\n\n\n") == []


async def test_crlf_line_endings() -> None:
    raw = b"event: e\r\ndata: one\r\ndata: two\r\n\r\ndata: [DONE]\r\n\r\n"
    assert await events(raw) == [SSEEvent("one\ntwo", "e"), SSEEvent("[DONE]")]


async def test_last_event_without_trailing_blank_line() -> None:
    assert await events(b"data: a\n\ndata: last") == [SSEEvent("a"), SSEEvent("last")]


async def test_last_event_with_single_newline() -> None:
    assert await events(b"data: a\n\nevent: end\ndata: last\n") == [SSEEvent("a"), SSEEvent("last", "end")]


async def test_lines_split_across_chunks() -> None:
    assert await events(b"da", b"ta: hel", b"lo\n", b"\n", b"data: x\n\n") == [SSEEvent("hello"), SSEEvent("x")]


async def test_only_one_leading_space_is_removed_and_colons_in_values_kept() -> None:
    assert await events(b'data:  two spaces\ndata: {"url":"http://x"}\n\n') == [
        SSEEvent(' two spaces\n{"url":"http://x"}'),
    ]


async def test_unknown_fields_are_ignored() -> None:
    assert await events(b"id: 7\nretry: 100\ndata: x\n\n") == [SSEEvent("x")]


async def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert await events(b"data: caf\xe9\n\n") == [SSEEvent("caf\ufffd")]


async def test_empty_stream() -> None:
    assert await events() == []


async def test_oversized_line_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as caught:
        await events(b"data: " + b"x" * 200 + b"\n\n", limit=16)
    assert caught.value.code == "bad_provider_stream"


def test_data_event_encoding() -> None:
    assert data_event({"a": 1, "b": "é"}) == b'data: {"a":1,"b":"\xc3\xa9"}\n\n'


def test_error_event_and_done() -> None:
    raw = error_event(InvalidRequest("nope", param="x", code="c"))
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    assert orjson.loads(raw[6:]) == {"error": {"message": "nope", "type": "invalid_request_error",
                                               "code": "c", "param": "x"}}
    assert DONE_EVENT == b"data: [DONE]\n\n"


@pytest.mark.parametrize(("data", "what"), [
    ('{"choices": ["oops"]}', "a chunk whose choices are not a list of objects"),
    ('{"choices": "oops"}', "a chunk whose choices are not a list of objects"),
    ('{"choices": [{"index": 0, "delta": "x"}]}', "a chunk whose choices are not a list of objects"),
    ('{"choices": [{"index": 0, "delta": null}]}', "a chunk whose choices are not a list of objects"),
    # A client reads chunk.choices[0]: null or missing choices break it (finding 20).
    ('{"id": "x", "object": "chat.completion.chunk", "choices": null}', "a chunk without a choices list"),
    ('{"id": "x"}', "a chunk without a choices list"),
    ('{"choices": null, "usage": null}', "a chunk without a choices list"),
    ("[1, 2]", "an event that is not a JSON object"),
    ("{oops", "an event that is not JSON"),
])
def test_openai_event_that_is_not_a_chunk_is_a_provider_error(data: str, what: str) -> None:
    with pytest.raises(ProviderError) as caught:
        OpenAIStreamTranslator().feed(SSEEvent(data))
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        502, "bad_provider_stream", "Provider sent a malformed stream event: " + what)


@pytest.mark.parametrize("data", [
    '{"choices": []}', '{"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}',
    '{"choices": [{"index": 0, "finish_reason": null, "content_filter_results": {}}]}',
])
def test_openai_chunks_of_every_known_shape_pass(data: str) -> None:
    assert OpenAIStreamTranslator().feed(SSEEvent(data)) == [orjson.loads(data)]


@pytest.mark.parametrize("choices", ["", ', "choices": null'])
def test_a_usage_chunk_without_choices_gets_openais_empty_list(choices: str) -> None:
    data = '{"id": "x", "usage": {"prompt_tokens": 1, "completion_tokens": 2}' + choices + "}"
    assert OpenAIStreamTranslator().feed(SSEEvent(data)) == [
        {"id": "x", "usage": {"prompt_tokens": 1, "completion_tokens": 2}, "choices": []}]


@pytest.mark.parametrize(("event", "data", "message", "error_type", "code"), [
    # OpenAI's own shape, with or without the SSE event name.
    (None, '{"error": {"message": "boom", "type": "server_error", "code": "overloaded"}}', "boom", "server_error",
     "overloaded"),
    ("error", '{"error": {"message": "boom", "type": "server_error"}}', "boom", "server_error", None),
    # `event: error` with a bare object used to be relayed as a chunk, re-stamped.
    ("error", '{"message": "x"}', "x", "provider_error", None),
    ("error", "overloaded", "Provider reported an error in the stream", "provider_error", None),
    ("error", "", "Provider reported an error in the stream", "provider_error", None),
    ("error", '{"choices": []}', "Provider reported an error in the stream", "provider_error", None),
])
def test_a_provider_error_event_is_a_provider_error(event: str | None, data: str, message: str, error_type: str,
                                                    code: str | None) -> None:
    with pytest.raises(ProviderError) as caught:
        OpenAIStreamTranslator().feed(SSEEvent(data, event))
    error = caught.value
    assert (error.status, error.message, error.error_type, error.code) == (502, message, error_type, code)


async def test_event_stream_response_sends_what_event_source_response_sent(
        aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]]) -> None:
    # What the relay used before (aiohttp-sse, now a test-only dependency): the same status line,
    # headers and body bytes.
    async def old(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = EventSourceResponse(
            headers={"X-Request-Id": "r"}, sep="\n", allow_all_methods=True)
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        response.stop_streaming()  # type: ignore[attr-defined]
        return response

    async def new(request: web.Request) -> web.StreamResponse:
        response = EventStreamResponse({"X-Request-Id": "r"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        response.stop_streaming()
        return response

    async def pinged(request: web.Request) -> web.StreamResponse:
        response = EventStreamResponse({})
        await response.prepare(request)
        response.ping()
        await asyncio.sleep(0.01)  # the ping is written by a task of its own
        await response.write(DONE_EVENT)
        response.stop_streaming()
        response.ping()  # stopped: no more keepalives
        return response

    app = web.Application()
    app.router.add_post("/old", old)
    app.router.add_post("/new", new)
    app.router.add_post("/pinged", pinged)
    client = await aiohttp_client(app)
    answers = []
    for path in ("/old", "/new"):
        async with client.post(path) as response:
            answers.append(([(k, v) for k, v in response.headers.items() if k != "Date"], await response.read()))
    assert answers[0] == answers[1]
    async with client.post("/pinged") as response:
        assert await response.read() == PING_COMMENT + DONE_EVENT
