"""Non-streamed Anthropic message -> OpenAI chat.completion."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.core.routes import Deployment, ProviderType
from sidecar.providers.anthropic import AnthropicProvider
from tests.unit.providers.support import NOW, fixed_clock, fixture_json

MODEL = "claude-sonnet-4-20250514"


def provider() -> AnthropicProvider:
    deployment = Deployment(name="d", provider=ProviderType.ANTHROPIC, base_url="https://api.anthropic.com", upstream_model=MODEL)
    return AnthropicProvider(deployment, clock=fixed_clock)


def test_text_response() -> None:
    assert provider().translate_response(fixture_json("anthropic_message_text.json")) == {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": NOW,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude. How can I help?"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598, "prompt_tokens_details": {"cached_tokens": 0}},
    }


def test_tool_use_response_with_cache_tokens() -> None:
    assert provider().translate_response(fixture_json("anthropic_message_tool_use.json")) == {
        "id": "msg_01Aq9w938a90dw8q",
        "object": "chat.completion",
        "created": NOW,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check the weather.",
                    "tool_calls": [
                        {
                            "id": "toolu_01A09q90qw90lq917835lq9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},
                        },
                        {"id": "toolu_01B18r81rx81mr826724mr8", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        # 50 fresh + 1200 cache writes + 3000 cache reads; only the reads count as cached.
        "usage": {"prompt_tokens": 4250, "completion_tokens": 120, "total_tokens": 4370, "prompt_tokens_details": {"cached_tokens": 3000}},
    }


def test_tool_only_response_has_null_content() -> None:
    payload: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    message = provider().translate_response(payload)["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}],
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reasons(stop_reason: str, finish_reason: str) -> None:
    payload = {**fixture_json("anthropic_message_text.json"), "stop_reason": stop_reason}
    assert provider().translate_response(payload)["choices"][0]["finish_reason"] == finish_reason


def test_empty_text_response_keeps_empty_string_content() -> None:
    payload = {**fixture_json("anthropic_message_text.json"), "content": [], "stop_reason": "max_tokens"}
    choice = provider().translate_response(payload)["choices"][0]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}


@pytest.mark.parametrize(("usage", "expected"), [
    ({"input_tokens": 5, "output_tokens": 3, "cache_read_input_tokens": 2},
     {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "prompt_tokens_details": {"cached_tokens": 2}}),
    ({"input_tokens": 5, "output_tokens": -3}, {"prompt_tokens": 5, "completion_tokens": -3, "total_tokens": None}),
    ({"input_tokens": 5, "cache_creation_input_tokens": 2.5, "output_tokens": 3},
     {"prompt_tokens": 2.5, "completion_tokens": 3, "total_tokens": None}),
])
def test_whole_answer_usage_keeps_a_bad_count_for_the_relay_to_refuse(usage: dict[str, Any],
                                                                      expected: dict[str, Any]) -> None:
    payload: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
                               "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                               "stop_sequence": None, "usage": usage}
    assert provider().translate_response(payload)["usage"] == expected
