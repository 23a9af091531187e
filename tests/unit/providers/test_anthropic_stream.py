"""Anthropic SSE stream -> OpenAI chat.completion.chunk sequence."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment, ProviderType
from sidecar.core.types import SSEEvent
from sidecar.core.usage import UsageRefused, checked_usage
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.anthropic_stream import AnthropicStreamTranslator
from tests.unit.providers.support import NOW, feed_all, fixed_clock, sse_events

MSG_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
MODEL = "claude-sonnet-4-20250514"


def translator() -> AnthropicStreamTranslator:
    deployment = Deployment(name="d", provider=ProviderType.ANTHROPIC, base_url="https://api.anthropic.com", upstream_model=MODEL)
    return AnthropicProvider(deployment, clock=fixed_clock).stream_translator()


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": MSG_ID,
        "object": "chat.completion.chunk",
        "created": NOW,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def tool_call(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


def test_full_stream_with_text_and_two_tool_calls() -> None:
    stream = translator()
    chunks = feed_all(stream, sse_events("anthropic_stream_text_and_tools.sse"))
    assert chunks == [
        ("message_start", chunk({"role": "assistant", "content": ""})),
        ("content_block_delta", chunk({"content": "Let me check"})),
        ("content_block_delta", chunk({"content": " both cities."})),
        (
            "content_block_start",
            chunk(tool_call(0, id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", type="function", function={"name": "get_weather", "arguments": ""})),
        ),
        ("content_block_delta", chunk(tool_call(0, function={"arguments": '{"location": "Par'}))),
        ("content_block_delta", chunk(tool_call(0, function={"arguments": 'is"}'}))),
        # Anthropic block 2 is the second tool call: OpenAI index 1, not 2.
        (
            "content_block_start",
            chunk(tool_call(1, id="toolu_01NRLabsLyVHZPKxbKvkfSMn", type="function", function={"name": "get_weather", "arguments": ""})),
        ),
        ("content_block_delta", chunk(tool_call(1, function={"arguments": '{"location": "Oslo"}'}))),
        ("message_delta", chunk({}, finish_reason="tool_calls")),
        (
            "message_stop",
            {
                "id": MSG_ID,
                "object": "chat.completion.chunk",
                "created": NOW,
                "model": MODEL,
                "choices": [],
                "usage": {"prompt_tokens": 1496, "completion_tokens": 89, "total_tokens": 1585, "prompt_tokens_details": {"cached_tokens": 1024}},
            },
        ),
    ]
    assert stream.done


def test_text_is_relayed_as_it_arrives() -> None:
    stream = translator()
    events = sse_events("anthropic_stream_text_and_tools.sse")
    first_text = next(i for i, event in enumerate(events) if '"text_delta"' in event.data)
    for event in events[:first_text]:
        stream.feed(event)
    assert stream.feed(events[first_text]) == [chunk({"content": "Let me check"})]
    assert not stream.done


def test_ping_and_block_stop_produce_nothing() -> None:
    stream = translator()
    assert stream.feed(SSEEvent(data='{"type": "ping"}', event="ping")) == []
    assert stream.feed(SSEEvent(data='{"type":"content_block_stop","index":0}', event="content_block_stop")) == []
    assert not stream.done


def test_unknown_events_and_thinking_deltas_are_skipped() -> None:
    stream = translator()
    assert stream.feed(SSEEvent(data='{"type":"future_event","x":1}', event="future_event")) == []
    thinking = '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}'
    assert stream.feed(SSEEvent(data=thinking, event="content_block_delta")) == []


def test_event_name_is_used_when_data_has_no_type() -> None:
    stream = translator()
    assert stream.feed(SSEEvent(data="{}", event="message_stop"))[0]["choices"] == []
    assert stream.done


def test_max_tokens_stop_in_message_delta() -> None:
    stream = translator()
    data = '{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":16}}'
    assert stream.feed(SSEEvent(data=data, event="message_delta"))[0]["choices"][0]["finish_reason"] == "length"


def test_error_event_mid_stream_raises() -> None:
    stream = translator()
    events = sse_events("anthropic_stream_overloaded.sse")
    chunks = feed_all(stream, events[:-1])
    assert chunks[-1] == ("content_block_delta", {**chunk({"content": "Hel"}), "id": "msg_01Ab3bGw5tQVgxmAkNAXZpaL"})
    with pytest.raises(ProviderError) as caught:
        stream.feed(events[-1])
    error = caught.value
    assert (error.status, error.error_type, error.code, error.retryable) == (503, "service_unavailable", "provider_overloaded", True)
    assert error.error_object()["message"] == "Overloaded"
    assert not stream.done


@pytest.mark.parametrize(
    ("error_type", "status", "retryable"),
    [("rate_limit_error", 429, True), ("api_error", 502, True), ("invalid_request_error", 400, False), ("something_new", 502, True)],
)
def test_error_event_statuses(error_type: str, status: int, retryable: bool) -> None:
    data = f'{{"type": "error", "error": {{"type": "{error_type}", "message": "boom"}}}}'
    with pytest.raises(ProviderError) as caught:
        translator().feed(SSEEvent(data=data, event="error"))
    assert (caught.value.status, caught.value.message, caught.value.retryable) == (status, "boom", retryable)


@pytest.mark.parametrize("data", ["not json", "[1]"])
def test_malformed_event_raises(data: str) -> None:
    with pytest.raises(ProviderError) as caught:
        translator().feed(SSEEvent(data=data, event="content_block_delta"))
    assert (caught.value.status, caught.value.code) == (502, "bad_provider_stream")


def test_each_translator_is_fresh() -> None:
    deployment = Deployment(name="d", provider=ProviderType.ANTHROPIC, base_url="https://api.anthropic.com", upstream_model=MODEL)
    provider = AnthropicProvider(deployment, clock=fixed_clock)
    first = provider.stream_translator()
    feed_all(first, sse_events("anthropic_stream_text_and_tools.sse"))
    assert first.done
    assert not provider.stream_translator().done


def _usage_at_stop(start_usage: dict[str, Any], delta_usage: dict[str, Any]) -> Any:
    stream = translator()
    stream.feed(SSEEvent(data='{"type":"message_start","message":{"id":"m","model":"c","usage":'
                         + orjson.dumps(start_usage).decode() + "}}", event="message_start"))
    stream.feed(SSEEvent(data='{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":'
                         + orjson.dumps(delta_usage).decode() + "}", event="message_delta"))
    (stop,) = stream.feed(SSEEvent(data='{"type":"message_stop"}', event="message_stop"))
    return stop["usage"]


def test_later_usage_wins_and_a_null_keeps_the_earlier_count() -> None:
    usage = _usage_at_stop({"input_tokens": 10, "output_tokens": 1}, {"input_tokens": None, "output_tokens": 7})
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (10, 7, 17)


@pytest.mark.parametrize(("start", "delta", "prompt", "completion"), [
    # A count Anthropic's translation used to sum or drop silently stays visible, so the relay refuses it.
    ({"input_tokens": -1_000_000, "output_tokens": 1}, {"output_tokens": 5}, -1_000_000, 5),
    ({"input_tokens": 10, "output_tokens": 1}, {"output_tokens": -5}, 10, -5),
    ({"input_tokens": 10, "cache_read_input_tokens": -9, "output_tokens": 1}, {"output_tokens": 5}, -9, 5),
    ({"input_tokens": "10", "output_tokens": 1}, {"output_tokens": 5}, "10", 5),
    ({"input_tokens": True, "output_tokens": 1}, {"output_tokens": 5}, True, 5),
])
def test_a_count_that_is_not_a_token_count_is_refused_downstream(
        start: dict[str, Any], delta: dict[str, Any], prompt: Any, completion: Any) -> None:
    usage = _usage_at_stop(start, delta)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (prompt, completion, None)
    with pytest.raises(UsageRefused):
        checked_usage(usage)
