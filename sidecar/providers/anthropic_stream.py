"""Anthropic Messages SSE stream -> OpenAI `chat.completion.chunk` dicts, one event at a time.

Nothing is buffered: each text or tool-argument delta becomes a chunk as soon as it arrives.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.core.errors import ProviderError
from sidecar.core.types import JSONDict, SSEEvent
from sidecar.providers.anthropic_response import (
    error_fields,
    finish_reason,
    json_finish_reason,
    provider_error,
    usage,
)


class AnthropicStreamTranslator:
    """State for one stream: message id/model, usage so far, and which blocks are tool calls."""

    def __init__(self, *, created: int, json_tool: str | None = None) -> None:
        self._created = created
        # The forced tool carrying `response_format`: its input deltas are relayed as content.
        self._json_tool = json_tool
        self._json_blocks: set[int] = set()
        self._id: str | None = None
        self._model: str | None = None
        self._usage: JSONDict = {}
        # Anthropic content-block index -> OpenAI tool_calls index. OpenAI numbers tool calls
        # 0, 1, ... while Anthropic numbers every block, text blocks included.
        self._tool_index: dict[int, int] = {}
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SSEEvent) -> list[JSONDict]:
        data = _parse(event.data)
        # The JSON `type` is authoritative; the SSE `event:` name duplicates it.
        match data.get("type", event.event):
            case "message_start":
                return self._message_start(data.get("message"))
            case "content_block_start":
                return self._block_start(data.get("index"), data.get("content_block"))
            case "content_block_delta":
                return self._block_delta(data.get("index"), data.get("delta"))
            case "message_delta":
                return self._message_delta(data.get("delta"), data.get("usage"))
            case "message_stop":
                self._done = True
                return [{**self._envelope(), "choices": [], "usage": usage(self._usage)}]
            case "error":
                kind, message = error_fields(data)
                raise provider_error(kind, message, None)
            case _:
                # ping, content_block_stop, and event types Anthropic may add later (its
                # versioning policy says clients must tolerate them) carry nothing to relay.
                return []

    def _message_start(self, message: Any) -> list[JSONDict]:
        message = message if isinstance(message, dict) else {}
        self._id = message.get("id")
        self._model = message.get("model")
        self._remember_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: Any, block: Any) -> list[JSONDict]:
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []
        if self._json_tool is not None and block.get("name") == self._json_tool:
            self._json_blocks.add(index)
            return []
        tool_index = self._tool_index[index] = len(self._tool_index)
        function = {"name": block.get("name"), "arguments": ""}
        call = {"index": tool_index, "id": block.get("id"), "type": "function", "function": function}
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: Any) -> list[JSONDict]:
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._json_blocks:
            return [self._chunk({"content": delta["partial_json"]})]
        # Anthropic opens tool input with an empty partial_json; relaying "" would be noise.
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            call = {"index": self._tool_index[index], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        # thinking_delta, signature_delta, citations_delta: no OpenAI counterpart.
        return []

    def _message_delta(self, delta: Any, delta_usage: Any) -> list[JSONDict]:
        self._remember_usage(delta_usage)
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        reason = json_finish_reason(stop_reason) if self._json_blocks else finish_reason(stop_reason)
        return [self._chunk({}, finish_reason=reason)]

    def _remember_usage(self, fields: Any) -> None:
        # message_start carries the input counts and message_delta the (cumulative) output count;
        # newer API versions may repeat input counts in message_delta, so later values win.
        # A null leaves the earlier value; any other value is kept as sent, for `usage` to judge.
        if isinstance(fields, dict):
            self._usage.update({key: value for key, value in fields.items() if value is not None})

    def _envelope(self) -> JSONDict:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model}

    def _chunk(self, delta: JSONDict, *, finish_reason: str | None = None) -> JSONDict:
        return {**self._envelope(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _parse(data: str) -> JSONDict:
    try:
        parsed: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProviderError("Provider sent a malformed stream event", code="bad_provider_stream") from exc
    if not isinstance(parsed, dict):
        raise ProviderError("Provider sent a malformed stream event", code="bad_provider_stream")
    return parsed

