"""Nesting depth: what the callout accepts is what the forwarding path can serialise."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.core.chat import parse_chat_request
from sidecar.core.errors import InvalidRequest
from sidecar.core.json_depth import MAX_JSON_DEPTH


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = [value]
    return value


def body_with_tool_depth(total_depth: int) -> dict[str, Any]:
    """A body whose deepest container sits at `total_depth` (the top-level object is 1)."""
    # object(1) > tools(2) > tool(3) > function(4) > parameters(5) > the nested lists (6 ...)
    return {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"x": nested(total_depth - 5)}}}]}


def test_the_deepest_accepted_body_parses() -> None:
    request = parse_chat_request(orjson.dumps(body_with_tool_depth(MAX_JSON_DEPTH)))
    assert request.model == "gpt-4"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 255, 600, 1000])
def test_deeper_is_a_400_naming_the_field(depth: int) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_chat_request(orjson.dumps(body_with_tool_depth(depth)) if depth < 250 else _raw(depth))
    error = refused.value
    assert (error.status, error.code) == (400, "nesting_too_deep")
    assert error.param is not None and error.param.startswith("tools[0].function.parameters.x")
    assert f"at most {MAX_JSON_DEPTH}" in error.message


def _raw(depth: int) -> bytes:
    # orjson cannot even write these; build the bytes by hand, as an attacker would.
    inner = b"[" * (depth - 5) + b'"deep"' + b"]" * (depth - 5)
    return (b'{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", '
            b'"function": {"name": "f", "parameters": {"x": ' + inner + b"}}}]}")


def test_deep_message_content_is_named_too() -> None:
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi", "metadata": nested(200)}]}
    with pytest.raises(InvalidRequest) as refused:
        parse_chat_request(orjson.dumps(body))
    assert refused.value.param is not None and refused.value.param.startswith("messages[0].metadata")


def test_brackets_inside_strings_do_not_count() -> None:
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "[" * 5000 + "{" * 5000}]}
    assert parse_chat_request(orjson.dumps(body)).model == "gpt-4"
