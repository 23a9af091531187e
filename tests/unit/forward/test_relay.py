"""stamping.ChunkStamper, the relay and helpers: model stamping, the role chunk, usage kept or dropped."""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from typing import Any

import aiohttp
import orjson
import pytest

from sidecar.callout.handoff import Decision
from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment, ModelRegistry, ProviderType
from sidecar.core.tokens import TokenStore
from sidecar.core.types import Usage
from sidecar.forward.exchange import DEPLOYMENT_HEADER, Exchange
from sidecar.forward.relay import (
    OFF_LOOP_COMPLETION_BYTES,
    _json_object,
    _pump,
    relay_completion,
)
from sidecar.forward.stamping import ChunkStamper
from sidecar.policy.snapshot import Policy
from sidecar.providers.openai_compat import OpenAICompatible


def exchange(wants_usage: bool = False, model_key: str = "gpt-4") -> Exchange:
    decision = Decision(request_id="req_1", token_name="t", team=None, model_key=model_key,
                        deployments=("p/up",), stream=True, client_wants_usage=wants_usage, policy_version="v")
    deployment = Deployment(name="p/up", provider=ProviderType.OPENAI, base_url="http://provider.test/v1", upstream_model="up")
    policy = Policy(version="v", source="test", tokens=TokenStore({}), models=ModelRegistry({}))
    return Exchange(decision=decision, policy=policy, deployment=deployment, provider=OpenAICompatible(deployment),
                    started=time.monotonic())


def chunk(content: str | None = None, role: str | None = None, **extra: Any) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}


USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


def usage_chunk() -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "up",
            "choices": [], "usage": dict(USAGE)}


def stamp_all(stamper: ChunkStamper, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [out for c in chunks for out in stamper.stamp(copy.deepcopy(c))]


def test_model_is_stamped_on_every_chunk() -> None:
    out = stamp_all(ChunkStamper(exchange(model_key="my-gpt")), [chunk("a", role="assistant"), chunk("b")])
    assert [c["model"] for c in out] == ["my-gpt", "my-gpt"]
    assert [c["choices"][0]["delta"].get("content") for c in out] == ["a", "b"]


def test_missing_object_is_filled_in() -> None:
    raw = chunk("a", role="assistant")
    del raw["object"]
    (out,) = ChunkStamper(exchange()).stamp(raw)
    assert out["object"] == "chat.completion.chunk"


def test_no_role_chunk_when_the_first_chunk_has_a_role() -> None:
    out = stamp_all(ChunkStamper(exchange()), [chunk("", role="assistant"), chunk("hi")])
    assert len(out) == 2
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_role_chunk_inserted_when_the_first_chunk_lacks_a_role() -> None:
    out = stamp_all(ChunkStamper(exchange(model_key="my-gpt")), [chunk("Hel"), chunk("lo")])
    assert out[0] == {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "my-gpt",
        "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
    }
    assert [c["choices"][0]["delta"] for c in out[1:]] == [{"content": "Hel"}, {"content": "lo"}]


def test_role_chunk_inserted_only_once() -> None:
    out = stamp_all(ChunkStamper(exchange()), [chunk("a"), chunk("b"), chunk("c")])
    roles = [c for c in out if c["choices"][0]["delta"].get("role") == "assistant"]
    assert len(roles) == 1 and len(out) == 4


def test_each_choice_gets_a_role_chunk_before_its_first_delta() -> None:
    two = chunk("a")
    two["choices"].append({"index": 1, "delta": {"content": "b"}, "finish_reason": None})
    later = chunk("c")
    later["choices"] = [{"index": 2, "delta": {"role": "assistant", "content": "c"}, "finish_reason": None}]
    out = stamp_all(ChunkStamper(exchange()), [two, chunk("d"), later])
    assert [[(c["index"], c["delta"]) for c in o["choices"]] for o in out] == [
        [(0, {"role": "assistant"})], [(1, {"role": "assistant"})], [(0, {"content": "a"}), (1, {"content": "b"})],
        [(0, {"content": "d"})], [(2, {"role": "assistant", "content": "c"})]]


def test_role_chunk_waits_for_a_chunk_with_choices() -> None:
    # Azure sends a prompt-filter chunk with empty choices first.
    filter_chunk = {"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": []}
    out = stamp_all(ChunkStamper(exchange()), [filter_chunk, chunk("a")])
    assert out[0]["choices"] == []
    assert out[1]["choices"][0]["delta"] == {"role": "assistant"}
    assert out[2]["choices"][0]["delta"] == {"content": "a"}


def test_usage_chunk_dropped_when_client_did_not_ask() -> None:
    stamper = ChunkStamper(exchange(wants_usage=False))
    out = stamp_all(stamper, [chunk("a", role="assistant"), usage_chunk()])
    assert len(out) == 1
    assert "usage" not in out[0]
    assert stamper.usage == Usage(prompt_tokens=5, completion_tokens=7)


def test_usage_chunk_kept_when_client_asked() -> None:
    stamper = ChunkStamper(exchange(wants_usage=True))
    out = stamp_all(stamper, [chunk("a", role="assistant"), usage_chunk()])
    assert len(out) == 2
    assert out[1]["usage"] == USAGE
    assert out[1]["model"] == "gpt-4"
    assert stamper.usage == Usage(prompt_tokens=5, completion_tokens=7)


def test_usage_on_a_content_chunk_is_removed_but_chunk_kept() -> None:
    stamper = ChunkStamper(exchange(wants_usage=False))
    out = stamp_all(stamper, [chunk("a", role="assistant", usage=dict(USAGE))])
    assert len(out) == 1
    assert "usage" not in out[0]
    assert out[0]["choices"][0]["delta"]["content"] == "a"
    assert stamper.usage == Usage(prompt_tokens=5, completion_tokens=7)


def test_null_usage_keys_stripped_when_client_did_not_ask() -> None:
    out = stamp_all(ChunkStamper(exchange(wants_usage=False)),
                    [chunk("a", role="assistant", usage=None), chunk("b", usage=None)])
    assert all("usage" not in c for c in out)
    assert len(out) == 2


def test_null_usage_left_alone_when_client_asked() -> None:
    # OpenAI itself sends `usage: null` on every chunk when include_usage is set.
    (out,) = stamp_all(ChunkStamper(exchange(wants_usage=True)), [chunk("a", role="assistant", usage=None)])
    assert out["usage"] is None


def test_no_usage_recorded_without_a_usage_chunk() -> None:
    stamper = ChunkStamper(exchange())
    stamp_all(stamper, [chunk("a", role="assistant")])
    assert stamper.usage is None


@pytest.mark.parametrize(("value", "expected"), [
    ({"prompt_tokens": 3, "completion_tokens": 4}, Usage(3, 4)),
    ({"prompt_tokens": 3}, None),
    ({"prompt_tokens": "3", "completion_tokens": 4}, None),
    ({"prompt_tokens": -1_000_000, "completion_tokens": -1_000_000}, None),
    ({"prompt_tokens": True, "completion_tokens": 4}, None),
    ({"prompt_tokens": 2**31, "completion_tokens": 4}, None),
    ([3, 4], None),
])
def test_stream_usage_is_kept_only_when_believable(value: object, expected: Usage | None) -> None:
    stamper = ChunkStamper(exchange(wants_usage=True))
    (out,) = stamp_all(stamper, [{**usage_chunk(), "usage": value}])
    assert stamper.usage == expected
    assert out["usage"] == value  # the client gets what the provider said; the gateway counts none of it


def test_a_refused_usage_is_logged_once_per_exchange(caplog: pytest.LogCaptureFixture) -> None:
    # Some providers repeat usage on every chunk: one warning, with the request id and the reason.
    stamper = ChunkStamper(exchange())
    bad = {"prompt_tokens": 5, "completion_tokens": -3}
    with caplog.at_level(logging.WARNING, logger="sidecar.usage"):
        stamp_all(stamper, [chunk("a", role="assistant", usage=bad), chunk("b", usage=bad), {**usage_chunk(),
                                                                                             "usage": bad}])
    assert stamper.usage is None
    records = [r for r in caplog.records if r.name == "sidecar.usage"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("WARNING", "provider usage refused; settled by estimate")]
    assert records[0].fields == {"request_id": "req_1", "deployment": "p/up",  # type: ignore[attr-defined]
                                 "reason": "usage.completion_tokens is not a token count: -3"}


def test_a_later_believable_usage_wins() -> None:
    stamper = ChunkStamper(exchange())
    stamp_all(stamper, [chunk("a", role="assistant", usage={"prompt_tokens": -1, "completion_tokens": 1}),
                        usage_chunk()])
    assert stamper.usage == Usage(prompt_tokens=5, completion_tokens=7)


async def test_a_whole_answer_with_negative_usage_is_settled_by_estimate(caplog: pytest.LogCaptureFixture) -> None:
    completion = {"id": "c", "object": "chat.completion", "created": 1, "model": "up",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "abcd"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": -5, "completion_tokens": 3, "total_tokens": -2}}
    ex = exchange()
    with caplog.at_level(logging.WARNING, logger="sidecar.usage"):
        response = await relay_completion(_Answer(orjson.dumps(completion)), ex)  # type: ignore[arg-type]
    assert response.status == 200
    assert (ex.usage, ex.completion_chars) == (None, 4)
    assert [r.getMessage() for r in caplog.records if r.name == "sidecar.usage"] == [
        "provider usage refused; settled by estimate"]


def test_json_object_accepts_an_object() -> None:
    assert _json_object(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(("payload", "message"), [
    (b"<html>oops</html>", "Provider returned a response that is not JSON"),
    (b"[1, 2]", "Provider returned a response that is not a JSON object"),
])
def test_json_object_rejects(payload: bytes, message: str) -> None:
    with pytest.raises(ProviderError) as caught:
        _json_object(payload)
    assert (caught.value.status, caught.value.code, caught.value.message) == (502, "bad_provider_response", message)


def test_exchange_fail_builds_the_error_response() -> None:
    ex = exchange()
    response = ex.fail(ProviderError("Upstream broke", code="x_code"))
    assert response.status == 502
    assert response.headers["X-Request-Id"] == "req_1"
    assert response.headers[DEPLOYMENT_HEADER] == "p/up"
    assert isinstance(response.body, bytes)
    assert orjson.loads(response.body) == {"error": {"message": "Upstream broke", "type": "provider_error",
                                                     "code": "x_code", "param": None}}
    assert (ex.status, ex.error) == (502, "x_code")


def test_exchange_headers() -> None:
    assert exchange().headers() == {"X-Request-Id": "req_1", DEPLOYMENT_HEADER: "p/up"}


class _Upstream:
    """Just enough of an aiohttp client response for `_pump`: the provider's SSE bytes, one
    network read per argument."""

    def __init__(self, *reads: bytes) -> None:
        self._chunks = list(reads)
        self.content = self

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


class _LeavingClient:
    """A client response whose writes fail after `ok` successful ones (the client left)."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.written: list[bytes] = []

    async def write(self, data: bytes) -> None:
        if len(self.written) >= self.ok:
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")  # what aiohttp raises
        self.written.append(data)

    async def write_eof(self, data: bytes) -> None:
        await self.write(data)

    def stop_streaming(self) -> None:
        pass


async def test_a_client_that_leaves_is_not_booked_as_a_provider_failure() -> None:
    # One token per network read, as a provider generating them: one write each.
    events = [b"data: " + orjson.dumps(chunk(word)) + b"\n\n" for word in ("a", "b", "c")] + [b"data: [DONE]\n\n"]
    ex = exchange()
    client = _LeavingClient(ok=2)
    with pytest.raises(asyncio.CancelledError):
        await _pump(_Upstream(*events), client, ex)  # type: ignore[arg-type]
    assert ex.error == "client_disconnected"
    assert ex.fault is None  # the breaker and the metrics must not blame the provider
    assert len(client.written) == 2
    assert ex.completion_chars >= 2


class _Answer:
    """An async context manager standing in for the provider call: one whole completion."""

    def __init__(self, payload: bytes) -> None:
        self.status = 200
        self._payload = payload

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None

    async def read(self) -> bytes:
        return self._payload


class _ThreadNoting:
    def __init__(self) -> None:
        self.threads: list[str] = []

    def on_completion(self, completion: dict[str, Any]) -> None:
        self.threads.append(threading.current_thread().name)

    def on_chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        return [chunk]

    def on_end(self) -> list[dict[str, Any]]:
        return []


@pytest.mark.parametrize(("size", "on_loop"), [(100, True), (OFF_LOOP_COMPLETION_BYTES + 1, False)])
async def test_a_large_answer_is_guarded_off_the_event_loop(size: int, on_loop: bool) -> None:
    completion = {"id": "c", "object": "chat.completion", "created": 1, "model": "up",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * size},
                               "finish_reason": "stop"}]}
    ex = exchange()
    guard = _ThreadNoting()
    ex.guards = [guard]
    response = await relay_completion(_Answer(orjson.dumps(completion)), ex)  # type: ignore[arg-type]
    assert response.status == 200
    assert (guard.threads == [threading.current_thread().name]) is on_loop


def test_completion_chars_count_every_text_the_walker_yields() -> None:
    from sidecar.forward.relay import _content_chars

    completion = {"choices": [{"index": 0, "message": {"content": "abcd", "reasoning_content": "ef", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}}]}
    assert _content_chars(completion) == 4 + 2 + 7


class _Recording:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    async def write_eof(self, data: bytes) -> None:
        await self.write(data)

    def stop_streaming(self) -> None:
        pass


async def test_events_read_together_go_out_in_one_write_and_none_waits_for_the_next_read() -> None:
    a, b, c = (b"data: " + orjson.dumps(chunk(word)) + b"\n\n" for word in ("a", "b", "c"))
    # Read 1: a, b and the first half of c; read 2: the rest of c and [DONE].
    upstream = _Upstream(a + b + c[:10], c[10:] + b"data: [DONE]\n\n")
    client = _Recording()
    await _pump(upstream, client, exchange())  # type: ignore[arg-type]
    assert len(client.written) == 2  # a and b before waiting for c's end; c and [DONE] together
    first, second = ([e.removeprefix(b"data: ") for e in w.split(b"\n\n") if e] for w in client.written)
    assert [orjson.loads(e)["choices"][0]["delta"].get("content") for e in first[1:]] == ["a", "b"]
    assert orjson.loads(first[0])["choices"][0]["delta"] == {"role": "assistant"}
    assert orjson.loads(second[0])["choices"][0]["delta"]["content"] == "c"
    assert second[1:] == [b"[DONE]"]


@pytest.mark.parametrize("delta", [
    {"role": "assistant", "content": "abc"}, {"content": "é" * 3, "refusal": None}, {"refusal": "no"},
    {"reasoning_content": "think", "reasoning": "more", "content": 5},
    {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": '{"a":'}}], "content": "x"},
    {"function_call": {"name": "f", "arguments": "{}"}}, {}, {"content": ""},
    # Answer fields that are not plain strings: audio transcripts, content parts, reasoning items.
    {"audio": {"id": "a1", "transcript": "heard it"}}, {"content": [{"type": "text", "text": "part"}]},
    {"content": {"type": "text", "text": "one part"}},
    {"reasoning_details": [{"type": "reasoning.text", "text": "why", "index": 0}]},
])
def test_completion_chars_are_what_the_walker_yields(delta: dict[str, Any]) -> None:
    from sidecar.core.walk import chunk_texts

    raw = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
           "choices": [{"index": 0, "delta": delta, "finish_reason": None},
                       {"index": 1, "delta": {"content": "zz"}, "finish_reason": None}]}
    stamper = ChunkStamper(exchange())
    stamper.stamp(copy.deepcopy(raw))
    assert stamper.completion_chars == sum(len(text.text) for text in chunk_texts(raw))
