"""Output guardrails over the answer fields beyond OpenAI's core ones: audio transcripts, content
parts (Mistral), annotations (web search), reasoning_details (OpenRouter), thinking_blocks
(LiteLLM) and fields the walker does not know, whole and streamed (values split across chunks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sidecar.core.errors import GuardrailBlocked
from sidecar.features.guardrails.output_check import OutputGuardrails
from sidecar.policy.guardrails import Action
from tests.unit.features.guardrails.test_output_check import EMAIL, chunk, completion, guards, pieces, pii, run_stream

Delta = dict[str, Any]


def test_completion_masks_every_new_field_in_place_and_leaves_ids_and_blobs_alone() -> None:
    body = completion({
        "content": [{"type": "thinking", "thinking": [{"type": "text", "text": f"user is {EMAIL}"}]},
                    {"type": "text", "text": f"write to {EMAIL}"}],
        "audio": {"id": "audio_1", "data": "UklGRg==", "expires_at": 9, "transcript": f"mail {EMAIL} now"},
        "annotations": [{"type": "url_citation", "url_citation": {
            "start_index": 0, "end_index": 5, "url": f"https://x.example/?u={EMAIL}", "title": f"About {EMAIL}"}}],
        "reasoning_details": [{"type": "reasoning.text", "text": f"is {EMAIL}", "signature": "c2ln", "index": 0},
                              {"type": "reasoning.summary", "summary": f"for {EMAIL}", "index": 1},
                              {"type": "reasoning.encrypted", "data": "ZW5j", "index": 2}],
        "thinking_blocks": [{"type": "thinking", "thinking": f"mail {EMAIL}", "signature": "c2ln"}],
        "vendor_extra": {"note": f"see {EMAIL}", "trace_id": "t1"},
    })
    guards().on_completion(body)
    message = json.loads(json.dumps(body))["choices"][0]["message"]  # still plain JSON
    assert EMAIL not in json.dumps(body)
    assert message["content"] == [{"type": "thinking", "thinking": [{"type": "text", "text": "user is [EMAIL_1]"}]},
                                  {"type": "text", "text": "write to [EMAIL_1]"}]
    assert message["audio"] == {"id": "audio_1", "data": "UklGRg==", "expires_at": 9, "transcript": "mail [EMAIL_1] now"}
    assert message["annotations"][0]["url_citation"] == {"start_index": 0, "end_index": 5,
                                                         "url": "https://x.example/?u=[EMAIL_1]",
                                                         "title": "About [EMAIL_1]"}
    assert message["reasoning_details"] == [
        {"type": "reasoning.text", "text": "is [EMAIL_1]", "signature": "c2ln", "index": 0},
        {"type": "reasoning.summary", "summary": "for [EMAIL_1]", "index": 1},
        {"type": "reasoning.encrypted", "data": "ZW5j", "index": 2}]
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "mail [EMAIL_1]", "signature": "c2ln"}]
    assert message["vendor_extra"] == {"note": "see [EMAIL_1]", "trace_id": "t1"}


@pytest.mark.parametrize("message", [
    {"content": [{"type": "text", "text": f"to {EMAIL}"}]},
    {"content": None, "audio": {"id": "a", "transcript": EMAIL}},
    {"content": "ok", "annotations": [{"type": "url_citation", "url_citation": {"url": "u", "title": EMAIL}}]},
    {"content": None, "reasoning_details": [{"type": "reasoning.summary", "summary": EMAIL}]},
    {"content": None, "thinking_blocks": [{"type": "thinking", "thinking": EMAIL}]},
    {"content": None, "unknown": [{"words": EMAIL}]},
], ids=["content-parts", "audio", "annotation", "reasoning-details", "thinking-blocks", "unknown"])
def test_completion_block_reads_every_new_field(message: dict[str, Any]) -> None:
    with pytest.raises(GuardrailBlocked) as caught:
        guards(pii(Action.BLOCK)).on_completion(completion(message))
    assert caught.value.guardrail_key == "pii-out"
    assert caught.value.findings == [{"category": "email", "message": "PII detected", "choice_index": 0,
                                      "role": "assistant"}]


# ---- streams -----------------------------------------------------------------------------

TEXT = f"Hello, write to {EMAIL} please, or call later."
MASKED = "Hello, write to [EMAIL_1] please, or call later."


def parts_text(delta: Delta, kind: str) -> str:
    content = delta.get("content")
    parts = content if isinstance(content, list) else [content] if isinstance(content, dict) else []
    out = ""
    for part in parts:
        if kind == "text" and part.get("type") == "text":
            out += part["text"]
        elif kind == "thinking" and part.get("type") == "thinking":
            out += "".join(p["text"] for p in part["thinking"])
    return out


def items_text(delta: Delta, member: str, key: str, index: int | None = None) -> str:
    return "".join(item.get(key) or "" for item in delta.get(member) or []
                   if index is None or item.get("index") == index)


SHAPES: list[Any] = [
    pytest.param(lambda p: {"audio": {"transcript": p}}, lambda d: (d.get("audio") or {}).get("transcript") or "",
                 id="audio-transcript"),
    pytest.param(lambda p: {"content": [{"type": "text", "text": p}]}, lambda d: parts_text(d, "text"),
                 id="content-parts"),
    pytest.param(lambda p: {"content": {"type": "text", "text": p}}, lambda d: parts_text(d, "text"),
                 id="content-object"),
    pytest.param(lambda p: {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": p}]}]},
                 lambda d: parts_text(d, "thinking"), id="mistral-thinking"),
    pytest.param(lambda p: {"reasoning_details": [{"type": "reasoning.text", "text": p, "index": 0}]},
                 lambda d: items_text(d, "reasoning_details", "text"), id="reasoning-details"),
    pytest.param(lambda p: {"thinking_blocks": [{"type": "thinking", "thinking": p}]},
                 lambda d: items_text(d, "thinking_blocks", "thinking"), id="thinking-blocks"),
]


@pytest.mark.parametrize("size", [1, 3, 7])
@pytest.mark.parametrize(("make", "read"), SHAPES)
def test_stream_masks_a_value_split_across_chunks_in_each_new_field(
        make: Callable[[str], Delta], read: Callable[[Delta], str], size: int) -> None:
    chunks = [chunk(make(piece)) for piece in pieces(TEXT, size)] + [chunk({}, finish="stop")]
    out = run_stream(guards(), chunks)
    assert "".join(read(c["choices"][0]["delta"]) for c in out if c.get("choices")) == MASKED
    assert "pat.sample" not in json.dumps(out) and "example.com" not in json.dumps(out)
    assert out[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(out) < len(chunks)  # chunks whose text is all held back are not sent empty


def test_stream_audio_keeps_its_id_and_reasoning_items_stay_apart() -> None:
    first = chunk({"audio": {"id": "audio_1", "transcript": TEXT[:10]}})
    rest = [chunk({"audio": {"transcript": p}, "reasoning_details": [
        {"type": "reasoning.text", "text": p, "index": 0},
        {"type": "reasoning.summary", "summary": p.upper(), "index": 1}]}) for p in pieces(TEXT[10:], 4)]
    out = run_stream(guards(), [first, *rest, chunk({}, finish="stop")])
    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[0]["audio"]["id"] == "audio_1"
    assert "".join((d.get("audio") or {}).get("transcript") or "" for d in deltas) == MASKED
    assert "".join(items_text(d, "reasoning_details", "text", 0) for d in deltas) == TEXT[10:].replace(
        EMAIL, "[EMAIL_1]")
    assert "".join(items_text(d, "reasoning_details", "summary", 1) for d in deltas) == TEXT[10:].upper().replace(
        EMAIL.upper(), "[EMAIL_1]")  # the same address, numbered once


def test_stream_annotations_and_unknown_fields_are_read_whole_in_their_chunk() -> None:
    annotation = {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 4,
                                                           "url": f"https://x.example/?to={EMAIL}", "title": "t"}}
    out = run_stream(guards(), [chunk({"content": "Hi"}), chunk({"annotations": [annotation]}),
                                chunk({"vendor": {"note": f"to {EMAIL}"}}), chunk({}, finish="stop")])
    deltas = [c["choices"][0]["delta"] for c in out]
    assert {"annotations": [{"type": "url_citation", "url_citation": {
        "start_index": 0, "end_index": 4, "url": "https://x.example/?to=[EMAIL_1]", "title": "t"}}]} in deltas
    assert {"vendor": {"note": "to [EMAIL_1]"}} in deltas
    assert "".join(d.get("content") or "" for d in deltas) == "Hi"


@pytest.mark.parametrize(("make", "read"), SHAPES)
def test_stream_block_in_each_new_field(make: Callable[[str], Delta], read: Callable[[Delta], str]) -> None:
    guard = OutputGuardrails([pii(Action.BLOCK)], "req")
    with pytest.raises(GuardrailBlocked):
        run_stream(guard, [chunk(make(piece)) for piece in pieces(TEXT, 4)] + [chunk({}, finish="stop")])


def test_held_text_of_every_field_is_released_masked_at_the_end_without_a_finish_reason() -> None:
    out = run_stream(guards(), [chunk({"content": [{"type": "text", "text": f"to {EMAIL}"}],
                                       "audio": {"transcript": f"said {EMAIL}"},
                                       "thinking_blocks": [{"type": "thinking", "thinking": EMAIL}]})])
    [last] = [c for c in out if c["choices"][0]["delta"]]
    assert last["choices"][0]["delta"] == {"audio": {"transcript": "said [EMAIL_1]"},
                                           "content": [{"type": "text", "text": "to [EMAIL_1]"}],
                                           "thinking_blocks": [{"type": "thinking", "thinking": "[EMAIL_1]"}]}


# ---- custom tools: `tool_calls[].custom.input`, free text -------------------------------------

def test_completion_masks_a_custom_tool_calls_input() -> None:
    call = {"id": "call_1", "type": "custom", "custom": {"name": "sql", "input": f"SELECT * WHERE mail='{EMAIL}'"}}
    body = completion({"content": None, "tool_calls": [call]})
    guards().on_completion(body)
    assert body["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_1", "type": "custom", "custom": {"name": "sql", "input": "SELECT * WHERE mail='[EMAIL_1]'"}}]


@pytest.mark.parametrize("size", [1, 3, 7])
def test_stream_masks_a_custom_tool_calls_input_split_across_chunks(size: int) -> None:
    text = f"SELECT * WHERE mail='{EMAIL}' AND 1"
    first = {"index": 0, "id": "call_1", "type": "custom", "custom": {"name": "sql", "input": ""}}
    chunks = [chunk({"role": "assistant", "tool_calls": [first]})]
    chunks += [chunk({"tool_calls": [{"index": 0, "custom": {"input": piece}}]}) for piece in pieces(text, size)]
    chunks.append(chunk({}, finish="tool_calls"))
    out = run_stream(guards(), chunks)
    sent = "".join((call.get("custom") or {}).get("input") or "" for c in out
                   for call in c["choices"][0]["delta"].get("tool_calls") or [])
    assert sent == "SELECT * WHERE mail='[EMAIL_1]' AND 1"
    assert EMAIL not in json.dumps(out)
    assert out[0]["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_1"  # the call's id leaves at once
