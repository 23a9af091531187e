"""The relay at a provider's odd stream: text the output guards hold is released before a provider
error, a guard's own block is not, and a stream request answered with JSON says so."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict

from sidecar.core.errors import GuardrailBlocked
from sidecar.forward.relay import _pump, relay_stream
from tests.unit.forward.test_relay import _Recording, _Upstream, chunk, exchange

ERROR = b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'


class _Holding:
    """An output guard that holds every text back until the end (a window that never fills)."""

    def __init__(self, block_at_end: bool = False) -> None:
        self.held: list[dict[str, Any]] = []
        self.block_at_end = block_at_end

    def on_completion(self, completion: dict[str, Any]) -> None:
        pass

    def on_chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            self.held.append(chunk)
            return []
        return [chunk]

    def on_end(self) -> list[dict[str, Any]]:
        if self.block_at_end:
            raise GuardrailBlocked("g", "block", [{"category": "email"}])
        held, self.held = self.held, []
        return held


def payloads(client: _Recording) -> list[Any]:
    raw = b"".join(client.written)
    return [orjson.loads(e.removeprefix(b"data: ")) if e != b"data: [DONE]" else "[DONE]"
            for e in raw.split(b"\n\n") if e]


def event(content: str) -> bytes:
    return b"data: " + orjson.dumps(chunk(content)) + b"\n\n"


@pytest.mark.parametrize("failure", [ERROR, b"event: error\ndata: {\"message\": \"boom\"}\n\n"])
async def test_clean_held_text_goes_out_before_the_provider_error(failure: bytes) -> None:
    ex = exchange()
    ex.guards = [_Holding()]
    client = _Recording()
    await _pump(_Upstream(event("hi"), event(" there"), failure), client, ex)  # type: ignore[arg-type]
    out = payloads(client)
    assert [c["choices"][0]["delta"] for c in out[:3]] == [{"role": "assistant"}, {"content": "hi"},
                                                          {"content": " there"}]
    assert out[3]["error"]["message"] == "boom" and out[3]["error"]["type"] in ("server_error", "provider_error")
    assert out[4:] == ["[DONE]"]
    assert ex.fault is not None and (ex.fault.status, str(ex.fault)) == (502, "boom")


async def test_held_text_also_goes_out_when_the_provider_just_stops() -> None:
    ex = exchange()
    ex.guards = [_Holding()]
    client = _Recording()
    await _pump(_Upstream(event("hi")), client, ex)  # type: ignore[arg-type]
    out = payloads(client)
    assert out[1]["choices"][0]["delta"] == {"content": "hi"}
    assert (out[2]["error"]["code"], out[3]) == ("stream_truncated", "[DONE]")


async def test_a_guard_that_blocks_what_it_held_releases_nothing() -> None:
    ex = exchange()
    ex.guards = [_Holding(block_at_end=True)]
    client = _Recording()
    await _pump(_Upstream(event("jane@example.com"), ERROR), client, ex)  # type: ignore[arg-type]
    out = payloads(client)
    assert [c["choices"][0]["delta"] for c in out[:1]] == [{"role": "assistant"}]
    assert out[1:] == [{"error": {"message": "boom", "type": "server_error", "code": None, "param": None}}, "[DONE]"]


class _JsonAnswer:
    """The provider call's context manager: a 200 whose body is JSON, not an event stream."""

    def __init__(self, payload: Any) -> None:
        self.status = 200
        self.content_type = "application/json"
        self.headers = CIMultiDict({"Content-Type": "application/json"})
        self._payload = orjson.dumps(payload)

    async def __aenter__(self) -> _JsonAnswer:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None

    async def read(self) -> bytes:
        return self._payload


@pytest.mark.parametrize(("payload", "status", "message", "code", "retry"), [
    ({"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "hi"}}]}, 502,
     "Provider answered the stream request with a whole JSON answer, not an event stream", "bad_provider_stream",
     "false"),
    ({"error": {"message": "model overloaded", "type": "server_error", "code": "overloaded"}}, 502,
     "model overloaded", "overloaded", None),
    ([1, 2], 502, "Provider answered the stream request with a whole JSON answer, not an event stream",
     "bad_provider_stream", "false"),
])
async def test_a_stream_request_answered_with_json_is_not_a_truncated_stream(
        payload: Any, status: int, message: str, code: str, retry: str | None) -> None:
    ex = exchange()
    response = await relay_stream(None, _JsonAnswer(payload), ex)  # type: ignore[arg-type]
    assert isinstance(response, web.Response) and isinstance(response.body, bytes)
    assert response.status == status
    error = orjson.loads(response.body)["error"]
    assert (error["message"], error["code"]) == (message, code)
    assert response.headers.get("x-should-retry") == retry
    assert response.headers["X-Request-Id"] == "req_1"
    assert (ex.status, ex.error) == (status, code)
