"""parse_chat_request: every validation rule, with the OpenAI `param` path and our error code."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.core.chat import ChatRequest, is_valid_request_id, parse_chat_request
from sidecar.core.errors import InvalidRequest

USER = {"role": "user", "content": "hi"}


def body(**fields: Any) -> dict[str, Any]:
    """A valid minimal request, with fields added, replaced or (value `...`) removed."""
    base: dict[str, Any] = {"model": "gpt-4", "messages": [USER]}
    for name, value in fields.items():
        if value is ...:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def parse(value: dict[str, Any]) -> ChatRequest:
    return parse_chat_request(orjson.dumps(value))


def rejected(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(raw)
    error = caught.value
    assert error.status == 400
    assert error.error_type == "invalid_request_error"
    return error


def rejected_body(value: dict[str, Any]) -> InvalidRequest:
    return rejected(orjson.dumps(value))


def with_messages(*messages: Any) -> dict[str, Any]:
    return body(messages=list(messages))


# ---- the happy path ---------------------------------------------------------------------------

def test_minimal_request_parses_with_defaults() -> None:
    request = parse(body())
    assert request == ChatRequest(
        body={"model": "gpt-4", "messages": [USER]}, model="gpt-4", stream=False, include_usage=False,
        max_tokens=None, request_id=None,
    )


def test_unknown_top_level_fields_pass_through() -> None:
    request = parse(body(seed=7, response_format={"type": "json_object"}))
    assert request.body["seed"] == 7
    assert request.body["response_format"] == {"type": "json_object"}


def test_every_role_is_accepted() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "developer", "content": "d"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "t", "tool_call_id": "call_1"},
    ]
    assert parse(body(messages=messages)).body["messages"] == messages


def test_five_megabyte_content_string_parses() -> None:
    big = "x" * (5 * 1024 * 1024)
    request = parse(with_messages({"role": "user", "content": big}))
    assert len(request.body["messages"][0]["content"]) == 5 * 1024 * 1024


# ---- the body as a whole ---------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"", b"   \n\t "], ids=["empty", "whitespace"])
def test_empty_body(raw: bytes) -> None:
    error = rejected(raw)
    assert (error.code, error.param) == ("invalid_json", None)
    assert "empty" in error.message


def test_malformed_json() -> None:
    error = rejected(b'{"model": "gpt-4",')
    assert (error.code, error.param) == ("invalid_json", None)
    assert error.message.startswith("The request body is not valid JSON: ")


def test_invalid_utf8() -> None:
    error = rejected(b'{"model":"\xff"}')
    assert (error.code, error.param) == ("invalid_encoding", None)
    assert error.message == "The request body is not valid UTF-8"


@pytest.mark.parametrize("raw", [b"[]", b'"gpt-4"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object(raw: bytes) -> None:
    error = rejected(raw)
    assert (error.code, error.param) == ("invalid_json", None)
    assert error.message == "The request body must be a JSON object"


def test_deeply_nested_json_is_invalid_request_not_recursion_error() -> None:
    error = rejected(b"[" * 100_000)
    assert (error.code, error.param) == ("invalid_json", None)


def test_deeply_nested_value_inside_an_object() -> None:
    raw = b'{"model":"gpt-4","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    error = rejected(raw)
    assert error.code == "invalid_json"


# ---- model -----------------------------------------------------------------------------------

def test_missing_model() -> None:
    error = rejected_body(body(model=...))
    assert (error.param, error.code) == ("model", "missing_model")
    assert error.message == "'model' is required and must be a non-empty string"


@pytest.mark.parametrize("model", ["", "   ", 4, ["gpt-4"], {"name": "gpt-4"}, True])
def test_empty_or_non_string_model(model: object) -> None:
    error = rejected_body(body(model=model))
    assert (error.param, error.code) == ("model", "invalid_type")


def test_null_model_counts_as_missing() -> None:
    error = rejected_body(body(model=None))
    assert (error.param, error.code) == ("model", "missing_model")


# ---- messages --------------------------------------------------------------------------------

@pytest.mark.parametrize("messages", [..., None], ids=["absent", "null"])
def test_missing_messages(messages: object) -> None:
    error = rejected_body(body(messages=messages))
    assert (error.param, error.code) == ("messages", "missing_messages")


@pytest.mark.parametrize("messages", [[], "hi", {"role": "user"}, 3])
def test_empty_or_non_array_messages(messages: object) -> None:
    error = rejected_body(body(messages=messages))
    assert (error.param, error.code) == ("messages", "invalid_type")
    assert error.message == "'messages' must be a non-empty array"


@pytest.mark.parametrize("message", ["hi", ["user", "hi"], None, 1])
def test_message_not_an_object(message: object) -> None:
    error = rejected_body(with_messages(USER, message))
    assert (error.param, error.code) == ("messages[1]", "invalid_type")


@pytest.mark.parametrize("role", ["robot", "USER", "", None, 1])
def test_unknown_role(role: object) -> None:
    error = rejected_body(with_messages({"role": role, "content": "x"}))
    assert (error.param, error.code) == ("messages[0].role", "invalid_role")
    assert error.message == "'messages[0].role' must be one of assistant, developer, function, system, tool, user"


def test_missing_role() -> None:
    error = rejected_body(with_messages({"content": "x"}))
    assert (error.param, error.code) == ("messages[0].role", "invalid_role")


@pytest.mark.parametrize("role", [["user"], {"name": "user"}])
def test_unhashable_role_is_invalid_request(role: object) -> None:
    error = rejected_body(with_messages({"role": role, "content": "x"}))
    assert (error.param, error.code) == ("messages[0].role", "invalid_role")


@pytest.mark.parametrize("role", ["system", "user", "assistant", "developer"])
def test_missing_content(role: str) -> None:
    error = rejected_body(with_messages(USER, {"role": role}))
    assert (error.param, error.code) == ("messages[1].content", "missing_content")


def test_null_content_counts_as_missing() -> None:
    error = rejected_body(with_messages({"role": "user", "content": None}))
    assert (error.param, error.code) == ("messages[0].content", "missing_content")


def test_assistant_with_tool_calls_may_omit_content() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    messages = [USER, {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}]
    assert parse(body(messages=messages)).body["messages"][1]["tool_calls"] == [call]


def test_assistant_with_null_content_and_tool_calls_is_accepted() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    parse(with_messages(USER, {"role": "assistant", "content": None, "tool_calls": [call]}))


def test_assistant_with_legacy_function_call_may_omit_content() -> None:
    parse(with_messages(USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}))


def test_assistant_refusal_with_null_content_is_accepted() -> None:
    parse(with_messages(USER, {"role": "assistant", "content": None, "refusal": "I can't help with that."}))


def test_legacy_function_role_is_accepted_and_needs_a_name() -> None:
    legacy = [USER, {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}]
    parse(with_messages(*legacy, {"role": "function", "name": "f", "content": "42"}))
    error = rejected_body(with_messages(*legacy, {"role": "function", "content": "42"}))
    assert (error.param, error.code) == ("messages[2].name", "missing_name")


@pytest.mark.parametrize(("message", "param", "code"), [
    ({"role": "assistant", "content": None, "function_call": {"arguments": "{}"}},
     "messages[1].function_call", "invalid_function_call"),
    ({"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": {"a": 1}}},
     "messages[1].function_call.arguments", "invalid_type"),
    ({"role": "assistant", "content": None, "refusal": 3}, "messages[1].refusal", "invalid_type"),
    ({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": 1}}]},
     "messages[1].tool_calls[0].function.arguments", "invalid_type"),
])
def test_malformed_legacy_fields_are_named(message: dict[str, Any], param: str, code: str) -> None:
    error = rejected_body(with_messages(USER, message))
    assert (error.param, error.code) == (param, code)


def test_user_with_tool_calls_still_needs_content() -> None:
    error = rejected_body(with_messages({"role": "user", "tool_calls": []}))
    assert (error.param, error.code) == ("messages[0].content", "missing_content")


@pytest.mark.parametrize("content", [42, {"type": "text", "text": "x"}, True])
def test_content_neither_string_nor_array(content: object) -> None:
    error = rejected_body(with_messages({"role": "user", "content": content}))
    assert (error.param, error.code) == ("messages[0].content", "invalid_type")


def test_content_parts_text_and_image_accepted() -> None:
    parts = [{"type": "text", "text": "what is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    request = parse(with_messages({"role": "user", "content": parts}))
    assert request.body["messages"][0]["content"] == parts


@pytest.mark.parametrize("part", [{"type": "video"}, {"text": "no type"}, "text", None])
def test_unknown_content_part_rejected(part: object) -> None:
    parts = [{"type": "text", "text": "ok"}, part]
    error = rejected_body(with_messages({"role": "user", "content": parts}))
    assert (error.param, error.code) == ("messages[0].content[1]", "invalid_content_part")


def test_unhashable_content_part_type_rejected() -> None:
    error = rejected_body(with_messages({"role": "user", "content": [{"type": {"t": "text"}}]}))
    assert (error.param, error.code) == ("messages[0].content[0]", "invalid_content_part")


@pytest.mark.parametrize("part", [{"type": "text"}, {"type": "text", "text": 5}, {"type": "text", "text": None}])
def test_text_part_without_text_rejected(part: dict[str, Any]) -> None:
    error = rejected_body(with_messages({"role": "user", "content": [part]}))
    assert (error.param, error.code) == ("messages[0].content[0].text", "invalid_type")


@pytest.mark.parametrize("tool_call_id", [..., None, 7])
def test_tool_message_without_tool_call_id(tool_call_id: object) -> None:
    message: dict[str, Any] = {"role": "tool", "content": "42"}
    if tool_call_id is not ...:
        message["tool_call_id"] = tool_call_id
    error = rejected_body(with_messages(USER, message))
    assert (error.param, error.code) == ("messages[1].tool_call_id", "missing_tool_call_id")


@pytest.mark.parametrize("tool_calls", ["call", {"function": {"name": "f"}}, None])
def test_assistant_tool_calls_not_an_array(tool_calls: object) -> None:
    error = rejected_body(with_messages(USER, {"role": "assistant", "content": "x", "tool_calls": tool_calls}))
    assert (error.param, error.code) == ("messages[1].tool_calls", "invalid_type")


@pytest.mark.parametrize("tool_calls", [1, True, "call", {"function": {"name": "f"}}])
def test_user_tool_calls_not_an_array(tool_calls: object) -> None:
    error = rejected_body(with_messages({"role": "user", "content": "x", "tool_calls": tool_calls}))
    assert (error.param, error.code) == ("messages[0].tool_calls", "invalid_type")


def test_user_tool_calls_null_is_accepted() -> None:
    parse(with_messages({"role": "user", "content": "x", "tool_calls": None}))


@pytest.mark.parametrize("call", [
    "f", {}, {"function": "f"}, {"function": {}}, {"function": {"name": 3}}, {"type": "function", "name": "f"},
])
def test_assistant_tool_call_malformed(call: object) -> None:
    good = {"id": "c0", "type": "function", "function": {"name": "ok", "arguments": "{}"}}
    message = {"role": "assistant", "tool_calls": [good, call]}
    error = rejected_body(with_messages(USER, message))
    assert (error.param, error.code) == ("messages[1].tool_calls[1]", "invalid_tool_call")
    assert error.message == "'messages[1].tool_calls[1].function.name' is required"


def test_error_names_the_first_bad_message_index() -> None:
    error = rejected_body(with_messages(USER, USER, {"role": "user"}, {"role": "robot", "content": "x"}))
    assert error.param == "messages[2].content"


# ---- sampling --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-0.1, 2.1, "1", True, False, [1]])
def test_temperature_rejected(value: object) -> None:
    error = rejected_body(body(temperature=value))
    assert (error.param, error.code) == ("temperature", "invalid_value")
    assert error.message == "'temperature' must be a number between 0 and 2"


@pytest.mark.parametrize("value", [0, 2, 1.5, 0.0, None])
def test_temperature_accepted(value: object) -> None:
    assert parse(body(temperature=value)).body["temperature"] == value


@pytest.mark.parametrize("value", [-0.01, 1.01, "0.5", True])
def test_top_p_rejected(value: object) -> None:
    error = rejected_body(body(top_p=value))
    assert (error.param, error.code) == ("top_p", "invalid_value")
    assert error.message == "'top_p' must be a number between 0 and 1"


@pytest.mark.parametrize("value", [0, 1, 0.9])
def test_top_p_accepted(value: float) -> None:
    assert parse(body(top_p=value)).body["top_p"] == value


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "5", True, False, 1.0])
def test_token_limits_rejected(name: str, value: object) -> None:
    error = rejected_body(body(**{name: value}))
    assert (error.param, error.code) == (name, "invalid_value")
    assert error.message == f"'{name}' must be a positive integer"


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_token_limit_of_one_accepted(name: str) -> None:
    assert parse(body(**{name: 1})).max_tokens == 1


def test_both_token_caps_only_with_the_same_value() -> None:
    # A provider may honour either name: with two different caps the reservation could cover the
    # smaller while the provider writes up to the larger.
    assert parse(body(max_tokens=100, max_completion_tokens=100)).max_tokens == 100
    for max_tokens, max_completion in ((100000, 1), (50, 100)):
        error = rejected_body(body(max_tokens=max_tokens, max_completion_tokens=max_completion))
        assert (error.param, error.code) == ("max_completion_tokens", "invalid_value")
        assert error.message == (f"'max_tokens' ({max_tokens}) and 'max_completion_tokens' ({max_completion}) "
                                 "differ; send one of them (max_completion_tokens is the current name)")


def test_max_tokens_used_when_alone() -> None:
    assert parse(body(max_tokens=300)).max_tokens == 300


# ---- streaming -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["true", 1, 0, {}, []])
def test_stream_must_be_bool(value: object) -> None:
    error = rejected_body(body(stream=value))
    assert (error.param, error.code) == ("stream", "invalid_type")


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (None, False)])
def test_stream_values(value: object, expected: bool) -> None:
    assert parse(body(stream=value)).stream is expected


@pytest.mark.parametrize("options", [True, "include_usage", ["include_usage"], 1])
def test_stream_options_must_be_an_object(options: object) -> None:
    error = rejected_body(body(stream=True, stream_options=options))
    assert (error.param, error.code) == ("stream_options", "invalid_type")


@pytest.mark.parametrize("value", ["true", 1, None])
def test_include_usage_must_be_bool(value: object) -> None:
    error = rejected_body(body(stream=True, stream_options={"include_usage": value}))
    assert (error.param, error.code) == ("stream_options.include_usage", "invalid_type")


@pytest.mark.parametrize(("options", "expected"), [
    ({"include_usage": True}, True), ({"include_usage": False}, False), ({}, False), (None, False),
])
def test_include_usage_values(options: object, expected: bool) -> None:
    assert parse(body(stream=True, stream_options=options)).include_usage is expected


# ---- request_id ------------------------------------------------------------------------------

@pytest.mark.parametrize("request_id", ["abc", "req_0123456789abcdef", "a" * 128, "x-!~{}"])
def test_request_id_valid(request_id: str) -> None:
    assert parse(body(request_id=request_id)).request_id == request_id
    assert is_valid_request_id(request_id)


@pytest.mark.parametrize("request_id", ["a" * 129, "", "has space", "tab\there", "é-accent", "line\nbreak",
                                        "\x7f", 12345, ["id"]])
def test_request_id_invalid(request_id: object) -> None:
    error = rejected_body(body(request_id=request_id))
    assert (error.param, error.code) == ("request_id", "invalid_value")
    assert error.message == "'request_id' must be 1-128 printable ASCII characters"
    assert not is_valid_request_id(request_id)


def test_error_body_has_openai_shape() -> None:
    error = rejected_body(body(temperature=3))
    assert orjson.loads(error.body()) == {"error": {
        "message": "'temperature' must be a number between 0 and 2", "type": "invalid_request_error",
        "code": "invalid_value", "param": "temperature",
    }}


# ---- integers beyond 64 bits (orjson would turn them into floats) ----------------------------

@pytest.mark.parametrize(("raw_field", "param"), [
    (b'"seed": 123456789012345678901234567890', "seed"),
    (b'"seed": -9223372036854775809', "seed"),
    (b'"tools": [{"type": "function", "function": {"name": "f", "parameters": {"maximum": 18446744073709551616}}}]',
     "tools[0].function.parameters.maximum"),
])
def test_integers_beyond_64_bits_are_refused_naming_the_field(raw_field: bytes, param: str) -> None:
    error = rejected(b'{"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}], ' + raw_field + b"}")
    assert (error.status, error.param, error.code) == (400, param, "integer_out_of_range")


@pytest.mark.parametrize("value", [9223372036854775807, -9223372036854775808, 18446744073709551615])
def test_64_bit_integers_keep_their_exact_value(value: int) -> None:
    raw = b'{"model": "gpt-4", "messages": [{"role": "user", "content": "1234567890123456789012"}], "seed": %d}' % value
    parsed = parse_chat_request(raw)
    assert parsed.body["seed"] == value and type(parsed.body["seed"]) is int
    assert orjson.loads(orjson.dumps(parsed.body))["seed"] == value  # and on the way to the provider
