"""Output guardrails over every field of whole completions and streams, per choice and tool call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.core.entity import ALL_CATEGORIES
from sidecar.core.errors import GuardrailBlocked
from sidecar.features.guardrails.output_check import OutputGuardrails
from sidecar.policy.guardrails import Action, Direction, Guardrail, GuardrailType
from sidecar.policy.patterns import compile_patterns

EMAIL, CARD = "pat.sample@example.com", "4111 1111 1111 1111"


def pii(action: Action = Action.MASK, key: str = "pii-out") -> Guardrail:
    return Guardrail(key=key, type=GuardrailType.PII, action=action, direction=Direction.OUTPUT,
                     categories=ALL_CATEGORIES)


def guards(*guardrails: Guardrail, json_answer: bool = False) -> OutputGuardrails:
    return OutputGuardrails(list(guardrails or [pii()]), "req", json_answer=json_answer)


def completion(message: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return {"id": "c1", "choices": [{"index": index, "message": {"role": "assistant", **message},
                                     "finish_reason": "stop"}]}


def chunk(delta: dict[str, Any], index: int = 0, finish: str | None = None, **choice: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, **choice}]}


def run_stream(guard: OutputGuardrails, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [c for each in chunks for c in guard.on_chunk(each)]
    return out + guard.on_end()


def joined(chunks: list[dict[str, Any]], field: str, index: int = 0) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks
                   if c.get("choices") and c["choices"][0]["index"] == index)


def arguments(chunks: list[dict[str, Any]]) -> dict[int, str]:
    calls: dict[int, str] = {}
    for c in chunks:
        for call in (c["choices"][0]["delta"].get("tool_calls") or []) if c.get("choices") else []:
            calls[call["index"]] = calls.get(call["index"], "") + ((call.get("function") or {}).get("arguments") or "")
    return calls


def pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


# ---- whole completions -------------------------------------------------------------------

def test_completion_masks_every_field_of_every_choice() -> None:
    args = json.dumps({"to": EMAIL, "cc": b"kim\\u0040example.org".decode("unicode_escape")})
    body = completion({"content": f"to {EMAIL}", "reasoning_content": f"user {EMAIL}", "reasoning": EMAIL,
                       "refusal": f"not {EMAIL}", "tool_calls": [
                           {"id": "a", "type": "function", "function": {"name": "send", "arguments": args}},
                           {"id": "b", "type": "function", "function": {"name": "send",
                                                                        "arguments": '{"to": "x\\u0040example.org"}'}}],
                       "function_call": {"name": "f", "arguments": json.dumps({"card": 4111111111111111})}})
    guards().on_completion(body)
    message = body["choices"][0]["message"]
    assert EMAIL not in json.dumps(body) and "4111" not in json.dumps(body)
    assert message["content"] == "to [EMAIL_1]" and message["refusal"] == "not [EMAIL_1]"
    assert message["reasoning_content"] == "user [EMAIL_1]" and message["reasoning"] == "[EMAIL_1]"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"to": "[EMAIL_1]", "cc": "[EMAIL_2]"}
    assert json.loads(message["tool_calls"][1]["function"]["arguments"]) == {"to": "[EMAIL_3]"}
    assert json.loads(message["function_call"]["arguments"]) == {"card": "[CREDIT_CARD_1]"}


def test_json_answer_number_becomes_a_string_placeholder() -> None:
    body = completion({"content": '{"name": "Kim", "card": 4111111111111111}'})
    guards(json_answer=True).on_completion(body)
    assert json.loads(body["choices"][0]["message"]["content"]) == {"name": "Kim", "card": "[CREDIT_CARD_1]"}


def test_prose_answer_is_not_quoted() -> None:
    body = completion({"content": "card 4111111111111111"})
    guards().on_completion(body)
    assert body["choices"][0]["message"]["content"] == "card [CREDIT_CARD_1]"


def test_block_in_tool_arguments_raises() -> None:
    body = completion({"content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": json.dumps({"to": EMAIL})}}]})
    with pytest.raises(GuardrailBlocked) as caught:
        guards(pii(Action.BLOCK)).on_completion(body)
    assert caught.value.findings[0]["category"] == "email"


def test_unicode_variants_are_masked_in_their_original_characters() -> None:
    body = completion({"content": "to pat.sample\uff20\u200bexample.com ok"})
    guards().on_completion(body)
    assert body["choices"][0]["message"]["content"] == "to [EMAIL_1] ok"


def test_pattern_guardrail_reads_tool_arguments() -> None:
    pattern = Guardrail(key="code", type=GuardrailType.PATTERN, action=Action.MASK, direction=Direction.OUTPUT,
                        matcher=compile_patterns([r"falcon-\d+"], [], []))
    body = completion({"content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"q": "falcon-7"}'}}]})
    guards(pattern).on_completion(body)
    assert json.loads(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"q": "[PATTERN_1]"}


# ---- streams -----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 3, 8, 200])
def test_parallel_tool_call_deltas_are_masked_per_call(size: int) -> None:
    first, second = json.dumps({"to": EMAIL}), json.dumps({"to": "kim@example.org", "n": 4111111111111111})
    chunks = [chunk({"role": "assistant", "content": None}),
              chunk({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
                                    {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]})]
    for a, b in zip(pieces(first, size), pieces(second, size), strict=False):
        chunks.append(chunk({"tool_calls": [{"index": 1, "function": {"arguments": b}},
                                            {"index": 0, "function": {"arguments": a}}]}))
    for b in pieces(second, size)[len(pieces(first, size)):]:
        chunks.append(chunk({"tool_calls": [{"index": 1, "function": {"arguments": b}}]}))
    chunks.append(chunk({}, finish="tool_calls"))
    out = run_stream(guards(), chunks)
    raw = json.dumps(out)
    assert "pat.sample" not in raw and "kim@" not in raw and "4111" not in raw
    calls = arguments(out)
    assert json.loads(calls[0]) == {"to": "[EMAIL_1]"} or json.loads(calls[0]) == {"to": "[EMAIL_2]"}
    parsed = json.loads(calls[1])
    assert parsed["n"] == "[CREDIT_CARD_1]" and parsed["to"].startswith("[EMAIL_")
    # ids and names are never held back, and the finish_reason arrives last.
    assert [c["choices"][0]["delta"]["tool_calls"][i]["id"] for c in out[1:2] for i in (0, 1)] == ["a", "b"]
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("size", [1, 5, 64])
def test_stream_json_answer_stays_valid(size: int) -> None:
    answer = '{"name": "Kim", "card": 4111111111111111, "mail": "pat.sample\\u0040example.com"}'
    chunks = [chunk({"role": "assistant", "content": ""}), *(chunk({"content": p}) for p in pieces(answer, size)),
              chunk({}, finish="stop")]
    out = run_stream(guards(json_answer=True), chunks)
    assert json.loads(joined(out, "content")) == {"name": "Kim", "card": "[CREDIT_CARD_1]", "mail": "[EMAIL_1]"}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "refusal", "content"])
def test_stream_masks_each_text_field(field: str) -> None:
    text = f"The user is {EMAIL}, fine."
    chunks = [chunk({"role": "assistant"}), *(chunk({field: p}) for p in pieces(text, 4)), chunk({}, finish="stop")]
    out = run_stream(guards(), chunks)
    assert joined(out, field) == "The user is [EMAIL_1], fine."
    assert EMAIL not in json.dumps(out)


def test_choices_are_held_apart() -> None:
    chunks = [chunk({"content": p}, index=i) for p in pieces(f"mail {EMAIL} now", 3) for i in (0, 1)]
    chunks += [chunk({}, index=0, finish="stop"), chunk({}, index=1, finish="stop")]
    out = run_stream(guards(), chunks)
    assert joined(out, "content", 0) == joined(out, "content", 1) == "mail [EMAIL_1] now"


def test_stream_block_in_tool_arguments_raises() -> None:
    guard = guards(pii(Action.BLOCK))
    with pytest.raises(GuardrailBlocked):
        run_stream(guard, [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                           for p in pieces(json.dumps({"to": EMAIL}), 5)] + [chunk({}, finish="tool_calls")])


def logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}


def test_logprobs_leave_in_order_with_their_text_and_masked_tokens_are_dropped() -> None:
    tokens = ["Hello ", "there, ", "mail ", "pat.sample", "@example", ".com", " and", " bye", "."]
    chunks = [chunk({"role": "assistant", "content": ""}, logprobs=None)]
    chunks += [chunk({"content": t}, logprobs={"content": [logprob(t)]}) for t in tokens]
    chunks.append(chunk({}, finish="stop", logprobs=None))
    out = run_stream(guards(), chunks)
    assert joined(out, "content") == "Hello there, mail [EMAIL_1] and bye."
    released = [e["token"] for c in out for e in ((c["choices"][0].get("logprobs") or {}).get("content") or [])]
    assert released == ["Hello ", "there, ", "mail ", " and", " bye", "."]
    # Never ahead of the text: each chunk's logprobs spell a prefix of the text released so far.
    text = ""
    spelled = ""
    for c in out:
        choice = c["choices"][0]
        text += choice["delta"].get("content") or ""
        spelled += "".join(e["token"] for e in ((choice.get("logprobs") or {}).get("content") or []))
        assert len(spelled) <= len(text.replace("[EMAIL_1]", "pat.sample@example.com"))


def test_unguarded_logprobs_pass_unchanged() -> None:
    chunks = [chunk({"content": w}, logprobs={"content": [logprob(w)]}) for w in ("red ", "green ", "blue")]
    out = run_stream(guards(), [*chunks, chunk({}, finish="stop")])
    assert [e["token"] for c in out for e in ((c["choices"][0].get("logprobs") or {}).get("content") or [])] == [
        "red ", "green ", "blue"]


def test_held_back_chunk_keeps_its_other_fields() -> None:
    out = guards().on_chunk(chunk({"role": "assistant", "content": "mail pat"}))
    assert out and out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert out[0]["id"] == "c1"


def test_stream_without_finish_reason_releases_every_field_at_the_end() -> None:
    guard = guards()
    out = guard.on_chunk(chunk({"content": "hi pat", "refusal": "no kim",
                                "tool_calls": [{"index": 3, "function": {"arguments": '{"a": "b'}}]}))
    end = guard.on_end()
    assert joined(out + end, "content") == "hi pat" and joined(out + end, "refusal") == "no kim"
    assert arguments(out + end) == {3: '{"a": "b'}


def test_whole_completion_logprobs_of_masked_text_are_dropped() -> None:
    tokens = ["mail ", "pat.sample", "@example.com", " now"]
    body = completion({"content": "".join(tokens)})
    body["choices"][0]["logprobs"] = {"content": [logprob(t) for t in tokens], "refusal": None}
    guards().on_completion(body)
    choice = body["choices"][0]
    assert choice["message"]["content"] == "mail [EMAIL_1] now"
    assert [e["token"] for e in choice["logprobs"]["content"]] == ["mail ", " now"]


def test_several_guardrails_each_act_on_their_own_findings() -> None:
    emails = Guardrail(key="emails", type=GuardrailType.PII, action=Action.MASK, direction=Direction.OUTPUT,
                       categories=frozenset({"email"}))
    cards = Guardrail(key="cards", type=GuardrailType.PII, action=Action.LOG, direction=Direction.OUTPUT,
                      categories=frozenset({"credit_card"}))
    guard = guards(emails, cards)
    chunks = [chunk({"content": p}) for p in pieces(f"mail {EMAIL} card {CARD}.", 3)] + [chunk({}, finish="stop")]
    out = run_stream(guard, chunks)
    assert joined(out, "content") == f"mail [EMAIL_1] card {CARD}."
    assert sorted((f["guardrail"], f["category"], f["action"]) for f in guard.findings) == [
        ("cards", "credit_card", "log"), ("emails", "email", "mask")]
    with pytest.raises(GuardrailBlocked) as caught:
        guards(emails, pii(Action.BLOCK, "blocker")).on_completion(completion({"content": f"to {EMAIL}"}))
    assert caught.value.guardrail_key == "blocker"


def test_a_held_back_chunk_with_usage_is_still_sent() -> None:
    out = guards().on_chunk({**chunk({"content": "mail pat"}), "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    assert out and out[0]["usage"]["completion_tokens"] == 2 and out[0]["choices"][0]["delta"] == {"content": ""}
