"""The optional fields the gateway decides on or reads: `n`, `user`, tool and function
definitions, `response_format`, `prediction` (sidecar/core/chat_options.py), through the parser."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.core.chat import parse_chat_request
from sidecar.core.chat_options import MAX_CHOICES
from sidecar.core.errors import InvalidRequest

FUNCTION = {"type": "function", "function": {"name": "send_mail", "description": "Sends a mail",
                                             "parameters": {"type": "object", "properties": {}}}}


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], **fields}


def rejected(**fields: Any) -> tuple[str | None, str | None, str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(orjson.dumps(request(**fields)))
    assert caught.value.status == 400
    return caught.value.param, caught.value.code, caught.value.message


@pytest.mark.parametrize("n", [1, 2, MAX_CHOICES, None])
def test_n_from_one_to_the_maximum(n: int | None) -> None:
    assert parse_chat_request(orjson.dumps(request(n=n))).body["n"] == n


@pytest.mark.parametrize("n", ["3", 3.0, 0, -1, MAX_CHOICES + 1, 1_000_000, True, [2]])
def test_n_anything_else_is_refused(n: object) -> None:
    # "3" and 3.0 would be reserved as one choice while a lenient provider makes three.
    assert rejected(n=n) == ("n", "invalid_value", f"'n' must be an integer from 1 to {MAX_CHOICES}")


@pytest.mark.parametrize("user", [5, {}, ["a"], True])
def test_user_must_be_a_string(user: object) -> None:
    assert rejected(user=user) == ("user", "invalid_type", "'user' must be a string")


def test_tools_and_functions_of_the_documented_shapes_pass() -> None:
    custom = {"type": "custom", "custom": {"name": "grammar"}}  # other tool types pass with their type
    legacy = {"name": "pay", "description": "Pays", "parameters": {"type": "object"}}
    parsed = parse_chat_request(orjson.dumps(request(tools=[FUNCTION, custom], functions=[legacy])))
    assert parsed.body["tools"] == [FUNCTION, custom] and parsed.body["functions"] == [legacy]


@pytest.mark.parametrize(("fields", "expected"), [
    ({"tools": "x"}, ("tools", "invalid_type", "'tools' must be an array")),
    ({"tools": ["x"]}, ("tools[0]", "invalid_type", "'tools[0]' must be an object")),
    ({"tools": [{"function": {"name": "a"}}]}, ("tools[0].type", "invalid_type", "'tools[0].type' is required")),
    ({"tools": [{"type": "function"}]}, ("tools[0].function", "invalid_type", "'tools[0].function' must be an object")),
    ({"tools": [{"type": "function", "function": {"description": "d"}}]},
     ("tools[0].function.name", "invalid_type", "'tools[0].function.name' is required")),
    ({"tools": [{"type": "function", "function": {"name": "a", "description": 7}}]},
     ("tools[0].function.description", "invalid_type", "'tools[0].function.description' must be a string")),
    ({"tools": [{"type": "function", "function": {"name": "a", "parameters": "{}"}}]},
     ("tools[0].function.parameters", "invalid_type",
      "'tools[0].function.parameters' must be a JSON Schema object")),
    ({"functions": {"name": "a"}}, ("functions", "invalid_type", "'functions' must be an array")),
    ({"functions": [{"name": ""}]}, ("functions[0].name", "invalid_type", "'functions[0].name' is required")),
    ({"response_format": "json"}, ("response_format", "invalid_type",
                                   "'response_format' must be an object with a string 'type'")),
    ({"prediction": {"content": "x"}}, ("prediction", "invalid_type",
                                        "'prediction' must be an object with a string 'type'")),
])
def test_malformed_definitions_are_named(fields: dict[str, Any], expected: tuple[str, str, str]) -> None:
    assert rejected(**fields) == expected


def test_turns_that_official_features_send_back_are_accepted() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        # An audio-output model's earlier answer, referred to by its id (no content).
        {"role": "assistant", "audio": {"id": "audio_abc"}},
        # A custom tool's call (free-text input) and its result.
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "custom", "custom": {"name": "grammar", "input": "SELECT 1"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
        # A Mistral reasoning model's answer, its thinking part sent back.
        {"role": "assistant", "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]},
                                          {"type": "text", "text": "ok"}]},
        {"role": "user", "content": "thanks"},
    ]
    assert parse_chat_request(orjson.dumps({"model": "gpt-4", "messages": messages})).body["messages"] == messages


@pytest.mark.parametrize(("call", "param", "message"), [
    ({"id": "c", "type": "custom", "custom": {"input": "x"}}, "messages[1].tool_calls[0].custom",
     "'messages[1].tool_calls[0].custom.name' is required"),
    ({"id": "c", "type": "custom", "custom": {"name": "g", "input": 5}}, "messages[1].tool_calls[0].custom.input",
     "'messages[1].tool_calls[0].custom.input' must be a string"),
])
def test_a_malformed_custom_tool_call_is_named(call: dict[str, Any], param: str, message: str) -> None:
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"},
                                           {"role": "assistant", "content": None, "tool_calls": [call]}]}
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(orjson.dumps(body))
    assert (caught.value.param, caught.value.message) == (param, message)
