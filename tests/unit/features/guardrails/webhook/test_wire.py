"""The wire contract: what the gateway sends, which answers it accepts and which it refuses."""

from __future__ import annotations

import orjson
import pytest

from sidecar.features.guardrails.webhook.wire import (
    WIRE_VERSION,
    CallContext,
    Direction,
    Finding,
    InvalidAnswer,
    Span,
    Text,
    parse_answer,
    request_body,
)

TEXTS = [Text("messages[0].content", "hello jane@example.com", role="user"),
         Text("messages[1].content[0].text", "héllo", role="user")]


def test_request_body_carries_the_context_and_never_a_token_secret() -> None:
    context = CallContext("req_1", "detector", Direction.INPUT, "mask", "gpt-4", "checkout", "payments")
    sent = orjson.loads(request_body(context, TEXTS))
    assert sent == {
        "version": WIRE_VERSION, "request_id": "req_1", "guardrail": "detector", "direction": "input",
        "action": "mask", "model": "gpt-4", "token": {"name": "checkout", "team": "payments"},
        "dry_run": False, "partial": False,
        "texts": [{"path": "messages[0].content", "role": "user", "offset": 0, "text": "hello jane@example.com"},
                  {"path": "messages[1].content[0].text", "role": "user", "offset": 0, "text": "héllo"}]}
    assert "cgt_" not in orjson.dumps(sent).decode()


def test_a_full_answer_is_parsed() -> None:
    answer = {"version": WIRE_VERSION, "findings": [
        {"category": "email", "message": "E-mail", "score": 1,
         "span": {"path": "messages[0].content", "start": 6, "end": 22}, "replacement": "[MAIL]"},
        {"category": "prompt_injection", "message": "Override"},
        {"category": "accent", "span": {"path": "messages[1].content[0].text", "start": 1, "end": 2}},
    ]}
    assert parse_answer(orjson.dumps(answer), TEXTS) == [
        Finding("email", "E-mail", 1.0, Span("messages[0].content", 6, 22), "[MAIL]"),
        Finding("prompt_injection", "Override"),
        Finding("accent", "Flagged by the detector", None, Span("messages[1].content[0].text", 1, 2)),
    ]


def test_clean_answer_without_version() -> None:
    assert parse_answer(b'{"findings": []}', TEXTS) == []


@pytest.mark.parametrize(("raw", "reason"), [
    (b"<html>", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"version": "cgt.guardrail.v0", "findings": []}', "unsupported version"),
    (b'{"findings": {}}', "'findings' must be a list"),
    (b'{"findings": [1]}', "findings[0] is not an object"),
    (b'{"findings": [{"category": "a b"}]}', "findings[0].category"),
    (b'{"findings": [{"category": "x", "message": 3}]}', "findings[0].message"),
    (b'{"findings": [{"category": "x", "score": "high"}]}', "findings[0].score"),
    (b'{"findings": [{"category": "x", "score": true}]}', "findings[0].score"),
    (b'{"findings": [{"category": "x", "replacement": 5}]}', "findings[0].replacement"),
    (b'{"findings": [{"category": "x", "span": {"path": "messages[9].content", "start": 0, "end": 1}}]}',
     "names no text that was sent"),
    (b'{"findings": [{"category": "x", "span": {"path": "messages[0].content", "start": 3, "end": 3}}]}',
     "0 <= start < end"),
    (b'{"findings": [{"category": "x", "span": {"path": "messages[0].content", "start": 0, "end": 99}}]}',
     "0 <= start < end"),
    (b'{"findings": [{"category": "x", "span": {"path": "messages[0].content", "start": 0.5, "end": 2}}]}',
     "must be integers"),
])
def test_contract_breaches_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidAnswer, match=reason.replace("[", r"\[").replace("(", r"\(")):
        parse_answer(raw, TEXTS)


def test_too_many_findings_is_a_broken_detector() -> None:
    answer = {"findings": [{"category": "x"}] * 1001}
    with pytest.raises(InvalidAnswer, match="more than 1000"):
        parse_answer(orjson.dumps(answer), TEXTS)


def test_public_view_names_the_path_not_the_value() -> None:
    finding = Finding("email", "E-mail", 0.9, Span("messages[0].content", 6, 22), "[MAIL]")
    assert finding.public() == {"category": "email", "message": "E-mail", "score": 0.9,
                                "path": "messages[0].content"}
