"""Where a field stream's released text goes in a delta, and when a delta carries nothing.

Both follow the walker's stream keys (`sidecar.core.walk`: choice index, field, sub-index):
text held back by a window (built-in or webhook) is released into a later chunk of the same
choice, in the shape its field has on the wire:

- `content`, `refusal`, `reasoning_content`, `reasoning`: appended to the string member;
- tool-call / function-call arguments: into the call with the key's `index`;
- `audio.transcript`: `delta.audio.transcript` (OpenAI audio-output streams);
- content parts: a `{"type": "text", "text": ...}` part (or a Mistral thinking part,
  `{"type": "thinking", "thinking": [{"type": "text", "text": ...}]}`) appended to `delta.content`;
- `reasoning_details`: an item `{"type": "reasoning.text"|"reasoning.summary", ..., "index": N}`;
- `thinking_blocks`: an item `{"type": "thinking", "thinking": ...}`.
"""

from __future__ import annotations

from typing import Any

from sidecar.core.walk import Field

# Keys a part or item may keep and still carry nothing once its text is held back.
_BARE_PART_KEYS = frozenset({"type", "index", "text", "summary", "thinking"})


def put_text(delta: dict[str, Any], field: Field, call_index: int, text: str) -> None:
    """Append released text to a delta, at the field (and tool call or item) it belongs to."""
    if field is Field.TOOL_ARGUMENTS:
        function = _call_member(delta, call_index, "function", {})
        function["arguments"] = (function.get("arguments") or "") + text
    elif field is Field.CUSTOM_INPUT:
        custom = _call_member(delta, call_index, "custom", {"type": "custom"})
        custom["input"] = (custom.get("input") or "") + text
    elif field is Field.FUNCTION_ARGUMENTS:
        function = delta.setdefault("function_call", {})
        function["arguments"] = (function.get("arguments") or "") + text
    elif field is Field.AUDIO_TRANSCRIPT:
        audio = delta.get("audio")
        if not isinstance(audio, dict):
            audio = delta["audio"] = {}
        audio["transcript"] = (audio.get("transcript") or "") + text
    elif field is Field.CONTENT_TEXT:
        _append_part(delta, {"type": "text", "text": text})
    elif field is Field.CONTENT_THINKING:
        _append_part(delta, {"type": "thinking", "thinking": [{"type": "text", "text": text}]})
    elif field is Field.REASONING_TEXT:
        _append_item(delta, "reasoning_details", {"type": "reasoning.text", "text": text, "index": call_index})
    elif field is Field.REASONING_SUMMARY:
        _append_item(delta, "reasoning_details", {"type": "reasoning.summary", "summary": text, "index": call_index})
    elif field is Field.THINKING:
        _append_item(delta, "thinking_blocks", {"type": "thinking", "thinking": text})
    else:
        delta[field.value] = (delta.get(field.value) or "") + text


def _call_member(delta: dict[str, Any], call_index: int, member: str, new: dict[str, Any]) -> dict[str, Any]:
    """The `member` (`function` or `custom`) of the delta's tool call `call_index`, the call made
    (with the fields of `new`) when the delta has none yet."""
    calls = delta.setdefault("tool_calls", [])
    call = next((c for c in calls if isinstance(c, dict) and c.get("index") == call_index), None)
    if call is None:
        call = {"index": call_index, **new, member: {}}
        calls.append(call)
    found: dict[str, Any] = call.setdefault(member, {})
    return found


def _append_part(delta: dict[str, Any], part: dict[str, Any]) -> None:
    content = delta.get("content")
    if isinstance(content, list):
        content.append(part)
    elif isinstance(content, dict):
        delta["content"] = [content, part]
    elif isinstance(content, str) and content:
        delta["content"] = [{"type": "text", "text": content}, part]  # one shape per delta: parts
    else:
        delta["content"] = [part]


def _append_item(delta: dict[str, Any], member: str, item: dict[str, Any]) -> None:
    items = delta.get(member)
    if isinstance(items, list):
        items.append(item)
    else:
        delta[member] = [item]


def carries_nothing(choice: dict[str, Any]) -> bool:
    """A choice with no finish_reason, no logprobs entries and only empty text in its delta."""
    delta = choice.get("delta") or {}
    content = delta.get("content")
    if (content and content.__class__ is str) or choice.get("finish_reason") is not None:
        return False  # the common case, decided first
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and any(logprobs.values()):
        return False
    return all(_empty_value(name, value) for name, value in delta.items())


def _empty_value(name: str, value: Any) -> bool:
    if value is None or value == "":
        return True
    if name == "tool_calls" and isinstance(value, list):
        return all(isinstance(c, dict) and set(c) <= {"index", "function"}
                   and set(c.get("function") or {}) <= {"arguments"} and not (c.get("function") or {}).get("arguments")
                   for c in value)
    if name == "function_call" and isinstance(value, dict):
        return set(value) <= {"arguments"} and not value.get("arguments")
    if name == "audio" and isinstance(value, dict):
        return set(value) <= {"transcript"} and not value.get("transcript")
    if name in ("content", "reasoning_details", "thinking_blocks"):
        return all(_empty_part(part) for part in (value if isinstance(value, list) else [value]))
    return False


def _empty_part(part: Any) -> bool:
    """A part or item whose only text is empty (an id, signature or format would still carry something)."""
    if part == "":
        return True
    if not isinstance(part, dict) or not set(part) <= _BARE_PART_KEYS:
        return False
    for key in ("text", "summary"):
        if part.get(key):
            return False
    thinking = part.get("thinking")
    return not thinking or (isinstance(thinking, list) and all(_empty_part(piece) for piece in thinking))
