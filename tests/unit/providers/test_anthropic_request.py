"""OpenAI chat request -> Anthropic Messages request."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.core.credentials import Credential
from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment, ProviderType
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.anthropic_request import build_body
from tests.unit.providers.support import fixed_clock, fixture_json

MODEL = "claude-sonnet-4-20250514"


def translate(body: dict[str, Any], default_max_tokens: int = 4096) -> dict[str, Any]:
    return build_body(body, model=MODEL, default_max_tokens=default_max_tokens)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def test_request_url_headers_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    deployment = Deployment(
        name="claude-main",
        provider=ProviderType.ANTHROPIC,
        base_url="https://api.anthropic.com/",
        upstream_model=MODEL,
        credential=Credential(env="TEST_ANTHROPIC_KEY"),
        headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    provider = AnthropicProvider(deployment, clock=fixed_clock)
    request = provider.build_request({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}, request_id="req-1")
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert dict(request.headers) == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "X-Request-Id": "req-1",
        "anthropic-beta": "prompt-caching-2024-07-31",
        "x-api-key": "sk-ant-test",
    }
    assert orjson.loads(request.body) == {"model": MODEL, "max_tokens": 4096, "messages": [user("Hi")]}


def test_no_key_header_without_a_credential() -> None:
    deployment = Deployment(name="d", provider=ProviderType.ANTHROPIC, base_url="http://localhost:8080", upstream_model=MODEL)
    request = AnthropicProvider(deployment).build_request({"messages": []}, request_id="r")
    assert "x-api-key" not in request.headers


def test_client_body_is_not_mutated() -> None:
    body = fixture_json("openai_request_tool_conversation.json")
    before = orjson.dumps(body)
    translate(body)
    assert orjson.dumps(body) == before


def test_full_tool_conversation_fixture() -> None:
    assert translate(fixture_json("openai_request_tool_conversation.json")) == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "You are a weather bot.",
        "stream": True,
        "messages": [
            user("Weather in Paris and Oslo?"),
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather", "input": {"location": "Oslo"}},
                ],
            },
            {
                # Both tool results and the following user turn form one user message.
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "content": "18C, sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "content": [{"type": "text", "text": "4C, rain"}]},
                    {"type": "text", "text": "Thanks, which is warmer?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
            }
        ],
        "tool_choice": {"type": "auto"},
    }


def test_system_messages_anywhere_are_joined() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}, {"type": "text", "text": "No emoji."}]},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "system", "content": ""},
        ]
    }
    assert translate(body) == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Be brief.\n\nAnswer in French.\n\nNo emoji.",
        "messages": [user("Hi"), {"role": "assistant", "content": [{"type": "text", "text": "Bonjour"}]}],
    }


def test_consecutive_same_role_messages_are_merged() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": "four"},
            {"role": "user", "content": "five"},
        ]
    }
    assert translate(body)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]},
        user("five"),
    ]


def test_multi_part_content_with_images() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "text", "text": ""},
                ],
            }
        ]
    }
    assert translate(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_unsupported_parts_are_a_client_error(part: dict[str, Any]) -> None:
    with pytest.raises(ProviderError) as caught:
        translate({"messages": [{"role": "user", "content": [part]}]})
    assert (caught.value.status, caught.value.error_type, caught.value.param, caught.value.retryable) == (
        400,
        "invalid_request_error",
        "messages",
        False,
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 300}, 300),
        ({"max_completion_tokens": 200}, 200),
        ({"max_tokens": 300, "max_completion_tokens": 200}, 200),
    ],
)
def test_max_tokens(fields: dict[str, Any], expected: int) -> None:
    assert translate({"messages": [], **fields})["max_tokens"] == expected


def test_max_tokens_defaults_to_the_deployment_setting() -> None:
    assert translate({"messages": []}, default_max_tokens=1024)["max_tokens"] == 1024


def test_sampling_fields_stop_and_user() -> None:
    body = {"messages": [], "temperature": 0.7, "top_p": 0.9, "stop": "END", "user": "user-42"}
    assert translate(body) == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [],
        "temperature": 0.7,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
    }


@pytest.mark.parametrize(("given", "sent"), [(1.5, 1.0), (2, 1.0), (0, 0.0), (-1, 0.0), (1, 1.0)])
def test_temperature_is_clamped_to_anthropics_range(given: float, sent: float) -> None:
    assert translate({"messages": [], "temperature": given})["temperature"] == sent


@pytest.mark.parametrize(("stop", "expected"), [(["a", "b"], ["a", "b"]), ([], None), (None, None)])
def test_stop_lists(stop: Any, expected: list[str] | None) -> None:
    assert translate({"messages": [], "stop": stop}).get("stop_sequences") == expected


def test_fields_that_ask_for_nothing_are_accepted_and_not_sent() -> None:
    body = {
        "messages": [],
        "stream": False,
        "stream_options": {"include_usage": True},
        "n": 1,
        "request_id": "r",
        "frequency_penalty": 0,
        "presence_penalty": 0.0,
        "logprobs": False,
        "seed": None,
        "logit_bias": {},
        "store": False,
        "service_tier": "auto",
        "prompt_cache_key": "k",
        "response_format": {"type": "text"},
    }
    assert translate(body) == {"model": MODEL, "max_tokens": 4096, "messages": []}


@pytest.mark.parametrize(("field", "value"), [
    ("frequency_penalty", 1), ("presence_penalty", 0.5), ("logprobs", True), ("top_logprobs", 2),
    ("seed", 7), ("logit_bias", {"50256": -100}), ("store", True), ("modalities", ["text", "audio"]),
    ("audio", {"voice": "alloy"}), ("prediction", {"type": "content", "content": "x"}),
    ("reasoning_effort", "high"), ("functions", [{"name": "f"}]), ("service_tier", "flex"),
    ("web_search_options", {}), ("some_new_field", 1),
])
def test_fields_anthropic_cannot_carry_are_refused_by_name(field: str, value: Any) -> None:
    # Dropping them silently answered something other than what was asked (issue 15, repro 05).
    with pytest.raises(ProviderError) as caught:
        translate({"messages": [], field: value})
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, field, "unsupported_for_provider")
    assert field in caught.value.message


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
          "additionalProperties": False}


def test_json_schema_becomes_a_forced_tool() -> None:
    body = {"messages": [], "response_format": {"type": "json_schema", "json_schema": {
        "name": "city", "strict": True, "schema": SCHEMA}}}
    sent = translate(body)
    assert sent["tools"] == [{"name": "city", "description": "Respond with JSON that matches this schema.",
                              "input_schema": SCHEMA}]
    assert sent["tool_choice"] == {"type": "tool", "name": "city"}


def test_json_object_becomes_a_forced_tool_taking_any_object() -> None:
    sent = translate({"messages": [], "response_format": {"type": "json_object"}})
    assert sent["tools"][0]["input_schema"] == {"type": "object"}
    assert sent["tool_choice"] == {"type": "tool", "name": "json_response"}


@pytest.mark.parametrize(("response_format", "param"), [
    ({"type": "json_schema", "json_schema": {"name": "l", "schema": {"type": "array"}}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "l"}}, "response_format.json_schema.schema"),
    ({"type": "xml"}, "response_format"),
])
def test_response_formats_that_cannot_be_carried_are_refused(response_format: Any, param: str) -> None:
    with pytest.raises(ProviderError) as caught:
        translate({"messages": [], "response_format": response_format})
    assert (caught.value.status, caught.value.param) == (400, param)


def test_response_format_with_tools_is_refused() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    with pytest.raises(ProviderError) as caught:
        translate({"messages": [], "tools": tools, "response_format": {"type": "json_object"}})
    assert (caught.value.status, caught.value.param) == (400, "response_format")


def test_n_greater_than_one_is_refused() -> None:
    with pytest.raises(ProviderError) as caught:
        translate({"messages": [], "n": 2})
    assert (caught.value.status, caught.value.param) == (400, "n")


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_variants(tool_choice: Any, expected: dict[str, Any]) -> None:
    out = translate({"messages": [], "tools": [WEATHER_TOOL], "tool_choice": tool_choice})
    assert out["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_use() -> None:
    out = translate({"messages": [], "tools": [WEATHER_TOOL], "parallel_tool_calls": False})
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    out = translate({"messages": [], "tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False})
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_without_parameters_gets_an_empty_schema() -> None:
    out = translate({"messages": [], "tools": [{"type": "function", "function": {"name": "now", "description": "Time"}}]})
    assert out["tools"] == [{"name": "now", "description": "Time", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in out


def test_tool_choice_without_tools_is_dropped() -> None:
    assert "tool_choice" not in translate({"messages": [], "tool_choice": "auto"})


def test_assistant_text_and_tool_calls_become_one_message() -> None:
    body = {
        "messages": [
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}}],
            }
        ]
    }
    assert translate(body)["messages"] == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "call_1", "name": "now", "input": {}}],
        }
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_malformed_tool_arguments_are_a_client_error(arguments: str) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(ProviderError) as caught:
        translate({"messages": [{"role": "assistant", "tool_calls": [call]}]})
    assert caught.value.status == 400


def test_unknown_role_is_a_client_error() -> None:
    with pytest.raises(ProviderError) as caught:
        translate({"messages": [{"role": "function", "name": "f", "content": "x"}]})
    assert caught.value.status == 400


def test_legacy_function_calling_becomes_tool_use() -> None:
    body = translate({"model": "m", "messages": [
        user("weather?"),
        {"role": "assistant", "content": None, "function_call": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
        {"role": "function", "name": "weather", "content": "sunny"},
        {"role": "assistant", "content": None, "refusal": "I cannot say more."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "Nor that."}]},
        user("ok")]})
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_legacy_1", "name": "weather",
                                           "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_legacy_1", "content": "sunny"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "I cannot say more."},
                                          {"type": "text", "text": "Nor that."}]},
        {"role": "user", "content": [{"type": "text", "text": "ok"}]},
    ]


def test_function_message_without_a_function_call_is_refused() -> None:
    with pytest.raises(ProviderError) as caught:
        translate({"model": "m", "messages": [user("hi"), {"role": "function", "name": "f", "content": "x"}]})
    assert caught.value.status == 400


@pytest.mark.parametrize("messages", [[{"role": "system", "content": "Be brief."}], [{"role": "developer", "content": "x"}]])
def test_a_conversation_of_system_prompts_only_is_refused_by_name(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(ProviderError) as caught:
        translate({"messages": messages})
    assert (caught.value.status, caught.value.param, caught.value.code, caught.value.message) == (
        400, "messages", "unsupported_for_provider",
        "This model's provider needs a user or assistant message besides the system prompt")
