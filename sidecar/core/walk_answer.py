"""The answer side of the exchange walker: whole completions and stream chunks.

For every choice of `choices[].message` (`completion_texts`) or `choices[].delta`
(`chunk_texts`), read by name:

- `content`, `refusal`, `reasoning_content`, `reasoning` (strings);
- every `tool_calls[].function.arguments` and `function_call.arguments` (JSON texts), and a custom
  tool's `tool_calls[].custom.input` (free text);
- `audio.transcript` (OpenAI audio-output models);
- `content` given as parts (an array, or in a delta one part object): each `text` part, and the
  text of each Mistral `thinking` part (`{"type": "thinking", "thinking": [{"type": "text", ...}]}`);
- `reasoning_details[].text` and `.summary` (OpenRouter; `data`, `signature` are opaque);
- `thinking_blocks[].thinking` (LiteLLM; `signature`, redacted `data` are opaque);

and as whole values (no stream window: a stream sends each whole, in one chunk):

- `annotations[]`'s strings: `url_citation.url` and `.title` (OpenAI web search);
- every other string leaf of a member the walker does not know, or of a content part of an
  unknown type (`walk_leaves.other_strings`: not ids, enums, names, signatures, `data`, `*_id`
  or `data:` URLs), as `Field.OTHER`: an answer field added by a provider is read, not passed.

A stream text has a `key`, (choice index, field, sub-index), stable across chunks: the deltas
of one field of one choice form one stream (sub-index 0), parallel tool calls one per call
`index`, `reasoning_details` one per item `index`; all text parts of a choice's `content`
form one stream and all its thinking text another, whatever their positions in their chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sidecar.core.walk_leaves import Path, other_strings
from sidecar.core.walk_types import REASONING_READINGS, Field, Text, custom_texts, function_texts, thinking_strings

# Plain-string fields of an answer's message (or delta), in the order they are read.
ANSWER_STRING_FIELDS = (Field.CONTENT, Field.REASONING_CONTENT, Field.REASONING, Field.REFUSAL)
_STRING_FIELDS = {field.value: field for field in ANSWER_STRING_FIELDS}
# Message (delta) members that are not answer text, or are read by `_answer_calls`.
_NOT_TEXT = frozenset({"role", "tool_calls", "function_call"})


def _answer_texts(choices: object, member: str, stream: bool, values: list[Text] | None = None) -> list[Text]:
    out: list[Text] = []
    whole = values if stream else out  # whole values (annotations, unknown fields): a stream's only when asked
    for position, choice in enumerate(choices if isinstance(choices, list) else ()):
        if not isinstance(choice, dict) or not isinstance(choice.get(member), dict):
            continue
        message = choice[member]
        number = choice.get("index", position)
        number = number if isinstance(number, int) else position
        # By the message's own keys: a stream delta usually has one or two.
        for name, value in message.items():
            field = _STRING_FIELDS.get(name)
            if field is not None and isinstance(value, str):
                out.append(Text(("choices", position, member, name), field, "assistant", number, value, (),
                                (number, field, 0) if stream else None))
            elif value is not None and name not in _NOT_TEXT:
                _answer_extra(("choices", position, member, name), value, number, stream, out, whole)
        if "tool_calls" in message or "function_call" in message:
            out.extend(_answer_calls(message, ("choices", position, member), number, stream))
    return out


def _answer_text(path: Path, field: Field, number: int, value: str, stream: bool, sub: int = 0) -> Text:
    return Text(path, field, "assistant", number, value, (), (number, field, sub) if stream else None)


def _answer_extra(path: Path, value: object, number: int, stream: bool, out: list[Text],
                  whole: list[Text] | None) -> None:
    """An answer member beyond the plain string fields: read exactly when known, else its string
    leaves as whole values (`walk_leaves.other_strings`)."""
    name = path[-1]
    if name == "content":
        _content_parts(path, value, number, stream, out, whole)
    elif name == "audio" and isinstance(value, dict):
        if isinstance(value.get("transcript"), str):
            out.append(_answer_text((*path, "transcript"), Field.AUDIO_TRANSCRIPT, number, value["transcript"], stream))
    elif name == "reasoning_details" and isinstance(value, list):
        for position, item in enumerate(value):
            if isinstance(item, dict):
                # Stream pieces of one item share its `index`; pieces without one continue item 0.
                sub = item.get("index", 0)
                sub = sub if isinstance(sub, int) else 0
                for key, field in REASONING_READINGS:
                    if isinstance(item.get(key), str):
                        out.append(_answer_text((*path, position, key), field, number, item[key], stream, sub))
    elif name == "thinking_blocks" and isinstance(value, list):
        for position, item in enumerate(value):
            if isinstance(item, dict) and isinstance(item.get("thinking"), str):
                out.append(_answer_text((*path, position, "thinking"), Field.THINKING, number, item["thinking"],
                                        stream))
    elif whole is not None:
        field = Field.ANNOTATION if name == "annotations" else Field.OTHER
        whole.extend(Text(where, field, "assistant", number, text) for where, text in other_strings(value, path))


def _content_parts(path: Path, value: object, number: int, stream: bool, out: list[Text],
                   whole: list[Text] | None) -> None:
    """`content` as an array of parts (or, in a delta, one part object): each text part, and the
    text of each Mistral `thinking` part. In a stream all text parts of a choice form one field
    stream, and all thinking text another, whatever their positions in their chunks."""
    parts = enumerate(value) if isinstance(value, list) else [(None, value)]
    for position, part in parts:
        where = path if position is None else (*path, position)
        if isinstance(part, str):
            out.append(_answer_text(where, Field.CONTENT_TEXT, number, part, stream))
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in (None, "text") and isinstance(part.get("text"), str):
            out.append(_answer_text((*where, "text"), Field.CONTENT_TEXT, number, part["text"], stream))
        elif kind == "thinking" and isinstance(part.get("thinking"), str | list):
            out.extend(_answer_text(at, Field.CONTENT_THINKING, number, text, stream)
                       for at, text in thinking_strings(part, where))
        elif whole is not None:
            whole.extend(Text(at, Field.OTHER, "assistant", number, text) for at, text in other_strings(part, where))


def _answer_calls(message: dict[str, Any], base: Path, number: int, stream: bool) -> Iterator[Text]:
    calls = message.get("tool_calls")
    for call_position, call in enumerate(calls if isinstance(calls, list) else ()):
        if not isinstance(call, dict):
            continue
        call_number = call.get("index", call_position) if stream else call_position
        call_number = call_number if isinstance(call_number, int) else call_position
        key = (number, Field.TOOL_ARGUMENTS, call_number) if stream else None
        yield from function_texts((*base, "tool_calls", call_position, "function"), call.get("function"),
                                   Field.TOOL_ARGUMENTS, "assistant", number, False, key)
        key = (number, Field.CUSTOM_INPUT, call_number) if stream else None
        yield from custom_texts((*base, "tool_calls", call_position, "custom"), call.get("custom"), "assistant",
                                number, False, key)
    if "function_call" in message:
        key = (number, Field.FUNCTION_ARGUMENTS, 0) if stream else None
        yield from function_texts((*base, "function_call"), message["function_call"],
                                   Field.FUNCTION_ARGUMENTS, "assistant", number, False, key)


def completion_texts(completion: dict[str, Any]) -> list[Text]:
    """Every text of a whole completion's `choices[].message`."""
    return _answer_texts(completion.get("choices"), "message", stream=False)


def chunk_texts(chunk: dict[str, Any], values: list[Text] | None = None) -> list[Text]:
    """Every stream text of a chunk's `choices[].delta`, each with its stream `key`.

    Whole values (`annotations`, string leaves of fields the walker does not know: keyless,
    read in each chunk on their own) are appended to `values` when it is given, else skipped.
    """
    return _answer_texts(chunk.get("choices"), "delta", True, values)  # positional: once per chunk
