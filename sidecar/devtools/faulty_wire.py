"""The three wire formats the faulty provider speaks: answers, stream events and error bodies.

OpenAI (and Azure, which adds a prompt-filter preamble chunk to streams) and Anthropic Messages,
shaped like the real APIs so the gateway's provider modules translate them as in production.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

OPENAI, AZURE, ANTHROPIC = "openai", "azure", "anthropic"
# What each API sends with a 429 (OpenAI's and Azure's x-ratelimit-*, Anthropic's anthropic-ratelimit-*).
RATE_LIMITED_HEADERS: dict[str, dict[str, str]] = {
    OPENAI: {"Retry-After": "7", "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
             "x-ratelimit-reset-requests": "7s"},
    AZURE: {"Retry-After": "7", "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"},
    ANTHROPIC: {"retry-after": "7", "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0"},
}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                          429: "rate_limit_error", 529: "overloaded_error"}


def words(model: str) -> list[str]:
    """The answer text for `model`, split into words that keep their leading space."""
    text = f"reply from {model} one two three"
    return [word if index == 0 else " " + word for index, word in enumerate(text.split(" "))]


def completion(wire: str, model: str, prompt_tokens: int, *, tool: str | None = None,
               completion_tokens: int | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole answer; `tool`: the Anthropic tool the request forced (answered as its tool_use);
    `usage`: reported instead of the true usage (the wire's own fields)."""
    answer = _completion(wire, model, prompt_tokens, tool, completion_tokens)
    if usage is not None:
        answer["usage"] = usage
    return answer


def _completion(wire: str, model: str, prompt_tokens: int, tool: str | None,
                completion_tokens: int | None) -> dict[str, Any]:
    text = "".join(words(model))
    used = len(words(model)) if completion_tokens is None else completion_tokens
    if wire == ANTHROPIC:
        content: dict[str, Any] = {"type": "text", "text": text}
        if tool is not None:
            content = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": tool,
                       "input": {"reply": text}}
        return {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant", "model": model,
                "content": [content], "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": used}}
    return {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used, "total_tokens": prompt_tokens + used}}


def error_body(wire: str, status: int, message: str) -> bytes:
    """An error body as `wire`'s provider sends it (OpenAI error object or Anthropic `{"type": "error"}`)."""
    if wire == ANTHROPIC:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    kind = "invalid_request_error" if 400 <= status < 500 and status != 429 else "server_error"
    return orjson.dumps({"error": {"message": message, "type": kind, "code": f"upstream_{status}", "param": None}})


class StreamEvents:
    """The events of one streamed answer, split where a fault may strike: `head`, one per word, `tail`."""

    def __init__(self, wire: str, model: str, prompt_tokens: int, include_usage: bool,
                 tool: str | None = None, usage: dict[str, Any] | None = None) -> None:
        self.wire, self.model = wire, model
        self._tool = tool  # Anthropic: the forced tool, whose input is streamed as input_json_delta
        self._usage = usage  # reported instead of the true usage (the wire's own fields)
        self._prompt_tokens, self._include_usage = prompt_tokens, include_usage
        self._id = ("msg_" if wire == ANTHROPIC else "chatcmpl-") + uuid.uuid4().hex[:20]

    def head(self) -> list[bytes]:
        """The stream's opening events (Anthropic's message_start; OpenAI's role chunk)."""
        if self.wire == ANTHROPIC:
            message: dict[str, Any] = {"id": self._id, "type": "message", "role": "assistant",
                                       "model": self.model, "content": [], "stop_reason": None,
                                       "usage": self._usage or {"input_tokens": self._prompt_tokens,
                                                                "output_tokens": 1}}
            block: dict[str, Any] = {"type": "text", "text": ""}
            if self._tool is not None:
                block = {"type": "tool_use", "id": "toolu_1", "name": self._tool, "input": {}}
            return [_named("message_start", {"type": "message_start", "message": message}),
                    _named("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
                    _named("ping", {"type": "ping"})]
        head = [self._chunk({"role": "assistant", "content": ""})]
        if self.wire == AZURE:
            preamble = {"choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
                        "id": "", "model": "", "object": "", "created": 0}
            head.insert(0, _data(preamble))
        return head

    def word(self, text: str) -> bytes:
        """One content delta event carrying `text`."""
        if self.wire == ANTHROPIC and self._tool is not None:
            # The tool's input {"reply": "…"} in pieces: the opening, then one word's JSON each, then the close.
            piece = orjson.dumps(text).decode()[1:-1]
            piece = ('{"reply": "' + piece) if not text.startswith(" ") else piece
            return _named("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "input_json_delta", "partial_json": piece}})
        if self.wire == ANTHROPIC:
            return _named("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": text}})
        return self._chunk({"content": text})

    def tail(self, *, finish: bool = True) -> list[bytes]:
        """The closing events (finish reason unless `finish=False`, usage when asked, `[DONE]`)."""
        count = len(words(self.model))
        if self.wire == ANTHROPIC:
            close = [] if self._tool is None else [_named("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '"}'}})]
            return [*close, _named("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    _named("message_delta", {"type": "message_delta", "delta": {
                        "stop_reason": "tool_use" if self._tool else "end_turn",
                        "stop_sequence": None}, "usage": self._usage or {"output_tokens": count}}),
                    _named("message_stop", {"type": "message_stop"})]
        tail = [self._chunk({}, finish_reason="stop")] if finish else []
        if self._include_usage:
            usage = self._usage or {"prompt_tokens": self._prompt_tokens, "completion_tokens": count,
                                    "total_tokens": self._prompt_tokens + count}
            tail.append(_data({**self._envelope(), "choices": [], "usage": usage}))
        return [*tail, b"data: [DONE]\n\n"]

    def two_choices(self) -> list[bytes]:
        """n=2, as servers that leave the role out of the deltas stream it (OpenAI wire)."""
        text = [self._choices([(index, {"content": word}, None) for index in (0, 1)]) for word in words(self.model)]
        return [*text, self._choices([(0, {}, "stop"), (1, {}, "stop")]), b"data: [DONE]\n\n"]

    def _choices(self, choices: list[tuple[int, dict[str, Any], str | None]]) -> bytes:
        return _data({**self._envelope(), "choices": [{"index": index, "delta": delta, "finish_reason": reason}
                                                       for index, delta, reason in choices]})

    def error_event(self, status: int, message: str) -> bytes:
        """An in-stream error event in `wire`'s format."""
        if self.wire == ANTHROPIC:
            return b"event: error\ndata: " + error_body(self.wire, status, message) + b"\n\n"
        return b"data: " + error_body(self.wire, status, message) + b"\n\n"

    def sse_error(self, message: str) -> bytes:
        """An SSE `event: error` whose data is a bare `{"message": …}`, not a chunk (some servers send it)."""
        return b"event: error\ndata: " + orjson.dumps({"message": message}) + b"\n\n"

    def null_choices(self) -> bytes:
        """A chunk whose `choices` is null (a client reading chunk.choices[0] fails on it)."""
        return _data({**self._envelope(), "choices": None})

    def _envelope(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _data({**self._envelope(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _named(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\n".encode() + _data(payload)
