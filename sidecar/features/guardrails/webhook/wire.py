"""The webhook guardrail's wire contract, version `cgt.guardrail.v1` (the README's "Webhook guardrails").

The gateway POSTs (Content-Type: application/json):

    {"version": "cgt.guardrail.v1", "request_id": "req_…", "guardrail": "injection-model",
     "direction": "input" | "output", "action": "block" | "mask" | "log", "model": "gpt-4",
     "token": {"name": "checkout-app", "team": "payments"}, "dry_run": false, "partial": false,
     "texts": [{"path": "messages[1].content", "role": "user", "offset": 0, "text": "…"}]}

`path` is the exchange walker's address of the text; `offset` is where `text` starts inside that
field (not 0 only for a window of a stream, when `partial` is true). The token itself is never sent.

The detector answers 200 with a JSON object:

    {"version": "cgt.guardrail.v1",            # optional; if given, must be this version
     "findings": [{"category": "prompt_injection", "message": "Instruction override",
                   "score": 0.97,                                                  # optional
                   "span": {"path": "messages[1].content", "start": 10, "end": 42},  # optional
                   "replacement": "[NAME_1]"}]}                                     # optional, mask

Offsets count Unicode code points of the `text` sent (Python `str` indexes; a JavaScript detector
must convert from UTF-16 units), `end` exclusive, relative to that `text` (not to `offset`).
An empty `findings` list means clean. Anything else (another status, not JSON, a wrong shape,
a span outside its text, a path that was not sent) is an error of the detector.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

WIRE_VERSION = "cgt.guardrail.v1"
MAX_FINDINGS = 1000  # more than this is a broken detector, not a finding
MAX_ANSWER_BYTES = 1024 * 1024
# Categories become metric label values: short, plain names only.
_CATEGORY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_MAX_MESSAGE_CHARS = 200
_MAX_REPLACEMENT_CHARS = 200


class Direction(StrEnum):
    """Which side of the exchange a call checks (the request's `direction`)."""

    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class Text:
    """One text the detector reads: its walker path, the role that wrote it, and where it starts."""

    path: str
    text: str
    role: str | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who asks: what the detector may know about the request (never the token's secret)."""

    request_id: str
    guardrail: str
    direction: Direction
    action: str
    model: str
    token_name: str
    team: str | None
    dry_run: bool = False
    partial: bool = False  # a window of a stream that is still running


@dataclass(frozen=True, slots=True)
class Span:
    """Where a finding is: code-point offsets into the text sent at `path`, `end` exclusive."""

    path: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding of the detector (validated by `parse_answer`)."""

    category: str
    message: str
    score: float | None = None
    span: Span | None = None
    replacement: str | None = None

    def public(self) -> dict[str, Any]:
        """What a client or `explain` may see: never the replacement's neighbourhood or the text."""
        shown: dict[str, Any] = {"category": self.category, "message": self.message}
        if self.score is not None:
            shown["score"] = self.score
        if self.span is not None:
            shown["path"] = self.span.path
        return shown


class InvalidAnswer(ValueError):
    """The detector's answer breaks the contract; the message says how (never quoting the texts)."""


def request_body(context: CallContext, texts: Sequence[Text]) -> bytes:
    """The JSON document POSTed to the detector (the module docstring's shape), as bytes."""
    return orjson.dumps({
        "version": WIRE_VERSION,
        "request_id": context.request_id,
        "guardrail": context.guardrail,
        "direction": context.direction.value,
        "action": context.action,
        "model": context.model,
        "token": {"name": context.token_name, "team": context.team},
        "dry_run": context.dry_run,
        "partial": context.partial,
        "texts": [{"path": t.path, "role": t.role, "offset": t.offset, "text": t.text} for t in texts],
    })


def parse_answer(raw: bytes, texts: Sequence[Text]) -> list[Finding]:
    """The findings of a 200 answer; raises InvalidAnswer when it breaks the contract."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidAnswer("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    version = answer.get("version", WIRE_VERSION)
    if version != WIRE_VERSION:
        raise InvalidAnswer(f"unsupported version (expected {WIRE_VERSION})")
    findings = answer.get("findings")
    if not isinstance(findings, list):
        raise InvalidAnswer("'findings' must be a list")
    if len(findings) > MAX_FINDINGS:
        raise InvalidAnswer(f"more than {MAX_FINDINGS} findings")
    lengths = {t.path: len(t.text) for t in texts}
    return [_finding(item, index, lengths) for index, item in enumerate(findings)]


def _finding(item: object, index: int, lengths: Mapping[str, int]) -> Finding:
    where = f"findings[{index}]"
    if not isinstance(item, dict):
        raise InvalidAnswer(f"{where} is not an object")
    category = item.get("category")
    if not isinstance(category, str) or not _CATEGORY.match(category):
        raise InvalidAnswer(f"{where}.category must be a short name ([A-Za-z0-9_.:-], up to 64)")
    message = item.get("message", "Flagged by the detector")
    if not isinstance(message, str):
        raise InvalidAnswer(f"{where}.message must be a string")
    score = item.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                              or not math.isfinite(score)):
        raise InvalidAnswer(f"{where}.score must be a number")
    replacement = item.get("replacement")
    if replacement is not None and (not isinstance(replacement, str) or len(replacement) > _MAX_REPLACEMENT_CHARS):
        raise InvalidAnswer(f"{where}.replacement must be a string of at most {_MAX_REPLACEMENT_CHARS} characters")
    span = _span(item.get("span"), where, lengths)
    return Finding(category, message[:_MAX_MESSAGE_CHARS], None if score is None else float(score), span, replacement)


def _span(value: object, where: str, lengths: Mapping[str, int]) -> Span | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidAnswer(f"{where}.span must be an object")
    path, start, end = value.get("path"), value.get("start"), value.get("end")
    if not isinstance(path, str) or path not in lengths:
        raise InvalidAnswer(f"{where}.span.path names no text that was sent")
    if not (_is_int(start) and _is_int(end)):
        raise InvalidAnswer(f"{where}.span.start and .end must be integers")
    assert isinstance(start, int) and isinstance(end, int)
    if not 0 <= start < end <= lengths[path]:
        raise InvalidAnswer(f"{where}.span must satisfy 0 <= start < end <= len(text)")
    return Span(path, start, end)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
