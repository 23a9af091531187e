"""Parsing and validating a chat-completions request body: once, in the callout.

Unknown top-level fields pass through untouched (OpenAI adds fields often); the fields the
gateway relies on are checked strictly and reported with OpenAI's `param` path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.core.chat_options import check_options, token_cap
from sidecar.core.errors import InvalidRequest
from sidecar.core.json_depth import MAX_JSON_DEPTH, check_depth

# `function` is the legacy (deprecated, still in the SDKs) role of a function call's result.
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Roles whose message needs nothing besides `content` (tool and function results need their ids).
_PLAIN_ROLES = ROLES - {"tool", "function"}
# `thinking`: a Mistral reasoning model's part, which a client sends back with the assistant turn.
_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal", "thinking"})
_MAX_REQUEST_ID_LENGTH = 128


@dataclass(frozen=True)
class ChatRequest:
    """A validated Chat Completions request: the decoded body plus the fields the gateway decides on (OpenAI's names).
    """

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    request_id: str | None


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Raw request bytes -> ChatRequest, per OpenAI's Chat Completions reference; raises InvalidRequest (400) naming
    the bad `param`.
    """
    body, scanned = _load_and_scan(raw)
    # check_depth's own first test (brackets, even in strings, bound the depth), on the scan.
    if scanned.count(b"[") > MAX_JSON_DEPTH:
        check_depth(body, raw)
    model = body.get("model")
    if type(model) is not str or not model.strip():
        model = required_model(body)  # raises the 400 naming `model` (or accepts a str subclass)
    _check_messages(body.get("messages"))
    if len(body) == 2:
        # Only `model` and `messages`, both checked: no option to check, every default applies.
        return ChatRequest(body=body, model=model, stream=False, include_usage=False, max_tokens=None,
                           request_id=None)
    _check_sampling(body)
    check_options(body)
    stream = _optional_bool(body, "stream") or False
    return ChatRequest(
        body=body,
        model=model,
        stream=stream,
        include_usage=_include_usage(body),
        max_tokens=token_cap(body),
        request_id=_request_id(body),
    )


def required_model(body: dict[str, Any]) -> str:
    """The body's `model`; raises InvalidRequest (400, param `model`) unless a non-empty string."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model",
                             code="missing_model" if model is None else "invalid_type")
    return model


def _load_json(raw: bytes) -> dict[str, Any]:
    return _load_and_scan(raw)[0]


def _load_and_scan(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON object in `raw` (400 unless one, or with an integer outside 64 bits), and `raw`
    mapped by _SCAN (digits to b"0", `[` and `{` to b"[", anything else to b".")."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson rejects invalid UTF-8 and nesting deeper than 1024 levels without recursing.
        if "utf-8" in str(exc).lower():
            raise InvalidRequest("The request body is not valid UTF-8", code="invalid_encoding") from None
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object", code="invalid_json")
    scanned = raw.translate(_SCAN)
    if _LONG_DIGIT_RUN in scanned:
        _check_integers(raw)
    return body, scanned


# orjson reads integers exactly within [-2**63, 2**64 - 1] and turns larger ones into floats (a
# 30-digit `seed` would reach the provider as 1.2345678901234568e+29). No OpenAI field takes such a
# number, so those are refused, naming the field. Only a body with a run of 19+ digits (maybe in a
# string) pays for the exact second parse. The run is looked for in one C pass (digits mapped to
# b"0", every other byte to b"."; then a substring search): a regex `\d{19}` took 9 µs per 1 KB
# body, this 1 µs. The same pass maps `[` and `{` to b"[", so the depth pre-check counts one byte.
_SCAN = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x5B if byte in b"[{" else 0x2E for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19
_INT_RANGE = (-(2**63), 2**64 - 1)


def _check_integers(raw: bytes) -> None:
    try:
        exact = json.loads(raw)  # arbitrary-precision integers
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply", code="invalid_json") from None
    pending: list[tuple[str, Any]] = [("", exact)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            pending.extend((f"{path}.{key}" if path else key, item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        elif type(value) is int and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise InvalidRequest(f"'{path}' is an integer outside the 64-bit range the gateway can relay exactly",
                                 param=path, code="integer_out_of_range")


def _check_messages(messages: object) -> None:
    if messages is None:
        raise InvalidRequest("'messages' is required", param="messages", code="missing_messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages", code="invalid_type")
    for index, message in enumerate(messages):
        # The usual turn, `{"role": <not tool/function>, "content": "<text>"}` and nothing else,
        # passes every check of _check_message: skip its calls (exact types: orjson makes no subclass).
        if type(message) is dict and len(message) == 2:
            role = message.get("role")
            if type(role) is str and role in _PLAIN_ROLES and type(message.get("content")) is str:
                continue
        _check_message(index, message)


def _check_message(index: int, message: object) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where, code="invalid_type")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidRequest(
            f"'{where}.role' must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role", code="invalid_role"
        )
    content = message.get("content")
    # An assistant turn may be only tool calls, a legacy function call, a refusal, or (audio-output
    # models, the next turn) the `audio: {"id": ...}` of its earlier answer.
    may_omit_content = role == "assistant" and any(
        message.get(name) is not None for name in ("tool_calls", "function_call", "refusal", "audio"))
    if content is None and not may_omit_content:
        raise InvalidRequest(f"'{where}.content' is required", param=f"{where}.content", code="missing_content")
    if content is not None:
        _check_content(where, content)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidRequest(f"'{where}.tool_call_id' is required for tool messages",
                             param=f"{where}.tool_call_id", code="missing_tool_call_id")
    if role == "function" and not isinstance(message.get("name"), str):
        raise InvalidRequest(f"'{where}.name' is required for function messages",
                             param=f"{where}.name", code="missing_name")
    _check_optional_string(where, message, "refusal")
    if message.get("function_call") is not None:
        _check_function(f"{where}.function_call", message["function_call"], code="invalid_function_call")
    # Any role (null aside): the quota estimate reads tool calls wherever they are.
    if "tool_calls" in message and (role == "assistant" or message["tool_calls"] is not None):
        _check_tool_calls(where, message["tool_calls"])


def _check_content(where: str, content: object) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of content parts",
                             param=f"{where}.content", code="invalid_type")
    for index, part in enumerate(content):
        part_where = f"{where}.content[{index}]"
        part_type = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part_type, str) or part_type not in _PART_TYPES:
            raise InvalidRequest(f"'{part_where}' must be a content part with a known 'type'",
                                 param=part_where, code="invalid_content_part")
        if part_type == "text" and not isinstance(part.get("text"), str):
            raise InvalidRequest(f"'{part_where}.text' must be a string", param=f"{part_where}.text",
                                 code="invalid_type")


def _check_tool_calls(where: str, tool_calls: object) -> None:
    if not isinstance(tool_calls, list):
        raise InvalidRequest(f"'{where}.tool_calls' must be an array", param=f"{where}.tool_calls",
                             code="invalid_type")
    for index, call in enumerate(tool_calls):
        call_where = f"{where}.tool_calls[{index}]"
        if isinstance(call, dict) and call.get("type") == "custom":
            # A custom tool's call: `{"id", "type": "custom", "custom": {"name", "input"}}`, input free text.
            _check_custom_call(f"{call_where}.custom", call.get("custom"))
            continue
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"'{call_where}.function.name' is required", param=call_where,
                                 code="invalid_tool_call")
        _check_function(f"{call_where}.function", function, code="invalid_tool_call")


def _check_custom_call(where: str, custom: object) -> None:
    if not isinstance(custom, dict) or not isinstance(custom.get("name"), str):
        raise InvalidRequest(f"'{where}.name' is required", param=where, code="invalid_tool_call")
    if custom.get("input") is not None and not isinstance(custom["input"], str):
        raise InvalidRequest(f"'{where}.input' must be a string", param=f"{where}.input", code="invalid_type")


def _check_function(where: str, function: object, *, code: str) -> None:
    """`{name, arguments}` of a tool call or a legacy function call: arguments is a JSON string."""
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"'{where}.name' is required", param=where, code=code)
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        raise InvalidRequest(f"'{where}.arguments' must be a string (JSON text)", param=f"{where}.arguments",
                             code="invalid_type")


def _check_optional_string(where: str, message: dict[str, Any], name: str) -> None:
    value = message.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"'{where}.{name}' must be a string", param=f"{where}.{name}", code="invalid_type")


def _check_sampling(body: dict[str, Any]) -> None:
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidRequest(f"'{name}' must be a number between {low:g} and {high:g}", param=name,
                                 code="invalid_value")


def _optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false", param=name, code="invalid_type")
    return value


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options", code="invalid_type")
    value = options.get("include_usage", False)
    if not isinstance(value, bool):
        raise InvalidRequest("'stream_options.include_usage' must be true or false",
                             param="stream_options.include_usage", code="invalid_type")
    return value


def _request_id(body: dict[str, Any]) -> str | None:
    value = body.get("request_id")
    if value is None:
        return None
    if not is_valid_request_id(value):
        raise InvalidRequest(
            f"'request_id' must be 1-{_MAX_REQUEST_ID_LENGTH} printable ASCII characters",
            param="request_id", code="invalid_value",
        )
    assert isinstance(value, str)
    return value


def is_valid_request_id(value: object) -> bool:
    """Printable ASCII without spaces, so it is safe as an HTTP header value and in logs."""
    # Printable ASCII (33-126) is ASCII, printable and not a space; str methods check that in C.
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_REQUEST_ID_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )
