"""Webhook output guardrails read every field the walker yields: tool-call arguments, function
calls, reasoning and refusals of every choice, in whole completions and in streams (per field
stream), mask JSON texts so they stay valid JSON, and keep logprobs in step with the text."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from sidecar.features.guardrails.webhook.output_guard import WebhookOutput
from tests.detector_server import DetectorServer
from tests.unit.features.guardrails.webhook.test_output_guard import guard, guardrail

ARGUMENTS = '{"card": 4111111111111111, "memo": "BANANA-7"}'


def answer() -> dict[str, Any]:
    return {"choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "reasoning_content": "the zebra said so",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "pay", "arguments": ARGUMENTS}}]}},
        {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": None,
                                                           "refusal": "not BANANA-2"}},
    ]}


async def test_completion_fields_are_sent_and_masked(detector: DetectorServer) -> None:
    completion = answer()
    async with guard(guardrail(detector, "mask")) as output:
        await output.check_completion(completion)
    [call] = detector.calls
    assert [t["path"] for t in call["body"]["texts"]] == [
        "choices[0].message.reasoning_content", "choices[0].message.tool_calls[0].function.arguments",
        "choices[1].message.refusal"]
    first, second = completion["choices"][0]["message"], completion["choices"][1]["message"]
    assert first["reasoning_content"] == "the [ANIMAL] said so"
    assert json.loads(first["tool_calls"][0]["function"]["arguments"]) == {"card": "[CARD_1]", "memo": "[CODEWORD_1]"}
    assert second["refusal"] == "not [CODEWORD_2]"


async def test_a_json_answer_stays_json(detector: DetectorServer) -> None:
    completion: dict[str, Any] = {"choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": '{"n": 4111111111111111}'}}]}
    async with guard(guardrail(detector, "mask"), json_answer=True) as output:  # the decision's JSON_ANSWER
        await output.check_completion(completion)
    assert json.loads(completion["choices"][0]["message"]["content"]) == {"n": "[CARD_1]"}


def tool_chunk(arguments: str, call: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": call, "function": {"arguments": arguments}}]},
                         "finish_reason": finish}]}


async def run(output: WebhookOutput, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for chunk in chunks:
        out += await output.check_chunks([chunk])
    return out + await output.release()


async def test_stream_tool_call_arguments_per_call(detector: DetectorServer) -> None:
    head = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "finish_reason": None, "delta": {
        "role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "pay", "arguments": ""}},
            {"index": 1, "id": "call_b", "type": "function", "function": {"name": "note", "arguments": ""}}]}}]}
    pieces = [ARGUMENTS[i:i + 5] for i in range(0, len(ARGUMENTS), 5)]
    chunks = [head] + [c for piece in pieces for c in (tool_chunk(piece, 0), tool_chunk("zeb" if piece else "", 1))]
    chunks.append({"id": "c1", "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    async with guard(guardrail(detector, "mask", stream_chars=1000)) as output:
        out = await run(output, chunks)
    assert out[0]["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_a"  # ids and names leave at once
    arguments: dict[int, str] = {}
    for chunk in out:
        for call in chunk["choices"][0]["delta"].get("tool_calls") or ():
            arguments[call["index"]] = arguments.get(call["index"], "") + call["function"].get("arguments", "")
    assert json.loads(arguments[0]) == {"card": "[CARD_1]", "memo": "[CODEWORD_1]"}
    assert arguments[1] == "zeb" * len(pieces)  # the other call's stream is its own: never mixed in
    paths = {call["body"]["texts"][0]["path"] for call in detector.calls}
    assert paths == {"choices[0].delta.tool_calls[0].function.arguments",
                     "choices[0].delta.tool_calls[1].function.arguments"}


async def test_stream_reasoning_and_refusal_are_checked(detector: DetectorServer) -> None:
    def delta(**fields: str) -> dict[str, Any]:
        return {"id": "c1", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}

    chunks = [delta(reasoning_content="think of BANA"), delta(reasoning_content="NA-5"), delta(refusal="a zebra")]
    async with guard(guardrail(detector, "mask", stream_chars=1000)) as output:
        out = await run(output, chunks)
    text = {"reasoning_content": "", "refusal": ""}
    for chunk in out:
        for name in text:
            text[name] += chunk["choices"][0]["delta"].get(name) or ""
    assert text == {"reasoning_content": "think of [CODEWORD_1]", "refusal": "a [ANIMAL]"}


async def test_stream_logprobs_follow_their_text_and_masked_ones_go(detector: DetectorServer) -> None:
    tokens = ["hi ", "BANANA", "-9", " ok"]
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": t}, "finish_reason": None,
         "logprobs": {"content": [{"token": t, "logprob": -0.1, "bytes": list(t.encode()), "top_logprobs": []}]}}]}
        for t in tokens]
    chunks.append({"id": "c1", "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    async with guard(guardrail(detector, "mask", stream_chars=1000)) as output:
        out = await run(output, chunks)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in out)
    entries = [e["token"] for c in out for e in (c["choices"][0].get("logprobs") or {}).get("content") or ()]
    assert content == "hi [CODEWORD_1] ok"
    assert entries == ["hi ", " ok"]  # in order; the masked value's tokens never leave
    assert out[-1]["choices"][0]["finish_reason"] == "stop"


async def test_placeholders_already_in_the_answer_are_not_reused(detector: DetectorServer) -> None:
    # The built-in output guardrails ran first and wrote [CODEWORD_1] for another value.
    message = {"role": "assistant", "content": "[CODEWORD_1] and BANANA-8"}
    completion: dict[str, Any] = {"choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
    async with guard(guardrail(detector, "mask")) as output:
        await output.check_completion(completion)
    assert completion["choices"][0]["message"]["content"] == "[CODEWORD_1] and [CODEWORD_2]"


HOSTILE_ARGUMENTS = '{"animal": "ostrich", "card": 4111111111111111, "path": "kiwi", "acct": 7701234567, "n": [1, 22]}'


async def test_stream_masks_keep_arguments_json_wherever_the_windows_cut(detector: DetectorServer) -> None:
    # Detector replacements that are not JSON-safe as they stand (`x"}, "evil": "1`, `C:\redacted`)
    # and bare numbers (one flagged from inside: `770` is not in the span), with windows cut
    # everywhere: inside strings, escapes and numbers (a cut never splits a number).
    for piece in (1, 4):
        for stream_chars in (3, 5, 8):
            for hold_back in (16, 19):
                pieces = [HOSTILE_ARGUMENTS[i:i + piece] for i in range(0, len(HOSTILE_ARGUMENTS), piece)]
                chunks = [tool_chunk(p) for p in pieces] + [tool_chunk("", finish="tool_calls")]
                masker = dataclasses.replace(guardrail(detector, "mask", stream_chars=stream_chars), hold_back=hold_back)
                async with guard(masker) as output:
                    out = await run(output, chunks)
                arguments = "".join(call["function"].get("arguments", "") for chunk in out
                                    for call in chunk["choices"][0]["delta"].get("tool_calls") or ())
                assert json.loads(arguments) == {"animal": 'x"}, "evil": "1', "card": "[CARD_1]", "path": "C:\\redacted",
                                                 "acct": "[TAIL_1]", "n": [1, 22]}, (piece, stream_chars, hold_back)


async def test_new_answer_fields_are_sent_with_their_paths_and_masked_in_place(detector: DetectorServer) -> None:
    message = {"role": "assistant",
               "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "BANANA-1 hm"}]},
                           {"type": "text", "text": "say BANANA-2"}],
               "audio": {"id": "audio_1", "data": "UklGRg==", "transcript": "heard BANANA-3"},
               "annotations": [{"type": "url_citation", "url_citation": {"url": "https://x/BANANA-4", "title": "t"}}],
               "reasoning_details": [{"type": "reasoning.summary", "summary": "a zebra", "index": 0}],
               "thinking_blocks": [{"type": "thinking", "thinking": "BANANA-5", "signature": "c2ln"}]}
    completion: dict[str, Any] = {"choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
    async with guard(guardrail(detector, "mask")) as output:
        await output.check_completion(completion)
    [call] = detector.calls
    base = "choices[0].message"
    assert [t["path"] for t in call["body"]["texts"]] == [
        f"{base}.content[0].thinking[0].text", f"{base}.content[1].text", f"{base}.audio.transcript",
        f"{base}.annotations[0].url_citation.url", f"{base}.annotations[0].url_citation.title",
        f"{base}.reasoning_details[0].summary", f"{base}.thinking_blocks[0].thinking"]
    seen = json.dumps(completion["choices"][0]["message"])
    assert "BANANA" not in seen and "zebra" not in seen
    # Placeholders are numbered in the order of the paths; the shapes around them are untouched.
    shape = re.sub(r"CODEWORD_\d", "CODEWORD_N", seen)
    assert json.loads(shape) == {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "[CODEWORD_N] hm"}]},
                    {"type": "text", "text": "say [CODEWORD_N]"}],
        "audio": {"id": "audio_1", "data": "UklGRg==", "transcript": "heard [CODEWORD_N]"},
        "annotations": [{"type": "url_citation", "url_citation": {"url": "https://x/[CODEWORD_N]", "title": "t"}}],
        "reasoning_details": [{"type": "reasoning.summary", "summary": "a [ANIMAL]", "index": 0}],
        "thinking_blocks": [{"type": "thinking", "thinking": "[CODEWORD_N]", "signature": "c2ln"}]}


async def test_stream_new_fields_each_have_a_window_and_a_path(detector: DetectorServer) -> None:
    def delta(**fields: Any) -> dict[str, Any]:
        return {"id": "c1", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}

    chunks = [delta(audio={"id": "audio_1", "transcript": "heard BAN"}), delta(audio={"transcript": "ANA-3 ok"}),
              delta(content=[{"type": "text", "text": "say BANA"}]), delta(content={"type": "text", "text": "NA-2"}),
              delta(reasoning_details=[{"type": "reasoning.text", "text": "a ze", "index": 1}]),
              delta(reasoning_details=[{"type": "reasoning.text", "text": "bra", "index": 1}])]
    async with guard(guardrail(detector, "mask", stream_chars=1000)) as output:
        out = await run(output, chunks)
    transcript = "".join((c["choices"][0]["delta"].get("audio") or {}).get("transcript") or "" for c in out)
    parts = [p for c in out for p in (c["choices"][0]["delta"].get("content") or [])]
    details = [d for c in out for d in (c["choices"][0]["delta"].get("reasoning_details") or [])]
    assert transcript == "heard [CODEWORD_1] ok"
    assert "".join(p["text"] for p in parts) == "say [CODEWORD_2]"
    assert "".join(d["text"] for d in details) == "a [ANIMAL]" and {d["index"] for d in details} == {1}
    assert out[0]["choices"][0]["delta"]["audio"]["id"] == "audio_1"
    paths = {text["path"] for call in detector.calls for text in call["body"]["texts"]}
    assert paths == {"choices[0].delta.audio.transcript", "choices[0].delta.content.text",
                     "choices[0].delta.reasoning_details[1].text"}


async def test_stream_annotations_and_unknown_fields_are_read_whole_in_their_chunk(detector: DetectorServer) -> None:
    def delta(**fields: Any) -> dict[str, Any]:
        return {"id": "c1", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}

    citation = {"type": "url_citation", "url_citation": {"url": "https://x/BANANA-4", "title": "a zebra"}}
    chunks = [delta(content="see "), delta(annotations=[citation]), delta(vendor_note="about BANANA-9")]
    async with guard(guardrail(detector, "mask", stream_chars=1000)) as output:
        out = await run(output, chunks)
    seen = json.dumps(out)
    assert "BANANA" not in seen and "zebra" not in seen
    (annotations,) = [c["choices"][0]["delta"]["annotations"] for c in out if "annotations" in c["choices"][0]["delta"]]
    assert annotations[0]["url_citation"]["title"] == "a [ANIMAL]"
    assert annotations[0]["url_citation"]["url"].startswith("https://x/[CODEWORD_")
    paths = {text["path"] for call in detector.calls for text in call["body"]["texts"]}
    assert {"choices[0].delta.annotations[0].url_citation.url", "choices[0].delta.annotations[0].url_citation.title",
            "choices[0].delta.vendor_note"} <= paths
