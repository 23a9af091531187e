"""The exchange walker: every text a model reads or writes, with a path to read and replace it."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.core.walk import (
    Edit,
    Field,
    apply_edits,
    chunk_texts,
    completion_texts,
    get_at,
    path_text,
    request_texts,
    text_edits,
)

CALL = {"id": "call_1", "type": "function", "function": {"name": "send_mail", "arguments": '{"to": "a@b.example"}'}}
REQUEST: dict[str, Any] = {"model": "m", "messages": [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": [{"type": "text", "text": "pat.sample@"}, {"type": "image_url", "image_url": {}},
                                 {"type": "text", "text": "example.com"}]},
    {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sent"}]},
    {"role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": "{}"}},
    {"role": "function", "name": "lookup", "content": "result"},
    {"role": "assistant", "content": None, "refusal": "no", "reasoning_content": "why"},
]}


def test_request_texts_cover_every_field_with_stable_paths() -> None:
    seen = [(path_text(t.path), t.field, t.role, t.owner_index, t.text) for t in request_texts(REQUEST)]
    assert seen == [
        ("messages[0].content", Field.CONTENT, "system", 0, "sys"),
        ("messages[1].content", Field.CONTENT, "user", 1, "pat.sample@example.com"),
        ("messages[2].tool_calls[0].function.arguments", Field.TOOL_ARGUMENTS, "assistant", 2, '{"to": "a@b.example"}'),
        ("messages[2].tool_calls[1].function.arguments", Field.TOOL_ARGUMENTS, "assistant", 2, '{"to": "a@b.example"}'),
        ("messages[3].content", Field.CONTENT, "tool", 3, "sent"),
        ("messages[4].function_call.arguments", Field.FUNCTION_ARGUMENTS, "assistant", 4, "{}"),
        ("messages[5].content", Field.CONTENT, "function", 5, "result"),
        ("messages[6].refusal", Field.REFUSAL, "assistant", 6, "no"),
        ("messages[6].reasoning_content", Field.REASONING_CONTENT, "assistant", 6, "why"),
    ]
    assert all(get_at(REQUEST, t.path) is not None for t in request_texts(REQUEST))


def test_names_only_when_asked() -> None:
    names = [path_text(t.path) for t in request_texts(REQUEST, names=True) if t.field is Field.NAME]
    assert names == ["messages[2].tool_calls[0].function.name", "messages[2].tool_calls[1].function.name",
                     "messages[4].function_call.name", "messages[5].name"]


def test_joined_parts_split_edits_over_their_segments() -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"type": "text", "text": "mail pat.sample@"},
                                                      {"type": "text", "text": "example.com now"}]}]}
    text = request_texts(body)[0]
    start = text.text.index("pat")
    edits = text_edits(text, start, start + len("pat.sample@example.com"), "[EMAIL_1]")
    assert edits == [Edit(("messages", 0, "content", 0, "text"), 5, 16, "[EMAIL_1]"),
                     Edit(("messages", 0, "content", 1, "text"), 0, 11, "")]
    apply_edits(body, edits)
    assert [p["text"] for p in body["messages"][0]["content"]] == ["mail [EMAIL_1]", " now"]


def test_completion_texts_read_every_choice_and_field() -> None:
    completion = {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": "c", "reasoning_content": "r", "refusal": "x",
                                 "tool_calls": [CALL, CALL]}},
        {"index": 1, "message": {"role": "assistant", "content": None, "reasoning": "t",
                                 "function_call": {"name": "f", "arguments": "{}"}}},
    ]}
    seen = [(path_text(t.path), t.owner_index) for t in completion_texts(completion)]
    assert seen == [
        ("choices[0].message.content", 0), ("choices[0].message.reasoning_content", 0),
        ("choices[0].message.refusal", 0), ("choices[0].message.tool_calls[0].function.arguments", 0),
        ("choices[0].message.tool_calls[1].function.arguments", 0), ("choices[1].message.reasoning", 1),
        ("choices[1].message.function_call.arguments", 1),
    ]


def test_chunk_texts_key_tool_call_deltas_by_their_index() -> None:
    chunk = {"choices": [{"index": 2, "delta": {"tool_calls": [
        {"index": 1, "function": {"arguments": "{\"a"}}, {"index": 0, "function": {"arguments": "1}"}}]}}]}
    keys = [(t.key, path_text(t.path)) for t in chunk_texts(chunk)]
    assert keys == [((2, Field.TOOL_ARGUMENTS, 1), "choices[0].delta.tool_calls[0].function.arguments"),
                    ((2, Field.TOOL_ARGUMENTS, 0), "choices[0].delta.tool_calls[1].function.arguments")]


@pytest.mark.parametrize(("role", "content", "is_json"), [
    ("tool", '{"a": 1}', True), ("function", ' [1, 2]', True), ("tool", "[note] x", False),
    ("user", '{"a": 1}', False), ("tool", "plain", False)])
def test_tool_results_read_as_json_when_they_are_json(role: str, content: str, is_json: bool) -> None:
    (text,) = request_texts({"messages": [{"role": role, "content": content}]})
    assert text.is_json is is_json


@pytest.mark.parametrize("body", [{}, {"messages": "x"}, {"messages": [1, None, {"role": "user"}]}])
def test_malformed_requests_yield_nothing(body: dict[str, Any]) -> None:
    assert list(request_texts(body)) == []


def test_apply_edits_refuses_a_path_that_is_not_a_string() -> None:
    with pytest.raises(TypeError):
        apply_edits({"messages": [{"content": 3}]}, [Edit(("messages", 0, "content"), 0, 1, "x")])
