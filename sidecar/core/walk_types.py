"""The walker's value types: fields, texts and their segments, edits, and paths into a document.

`sidecar.core.walk` (requests) and `sidecar.core.walk_answer` (completions and stream chunks)
yield `Text`s; guardrails turn findings into `Edit`s (`text_edits`) that `apply_edits` makes in
place. A path is the tuple of JSON object keys and array indexes from the document's root.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from sidecar.core.walk_leaves import Path


class Field(StrEnum):
    """The kind of a text the walker yields; the value is its name in paths and findings."""

    CONTENT = "content"
    REFUSAL = "refusal"
    REASONING_CONTENT = "reasoning_content"
    REASONING = "reasoning"
    TOOL_ARGUMENTS = "tool_calls.function.arguments"
    FUNCTION_ARGUMENTS = "function_call.arguments"
    CUSTOM_INPUT = "tool_calls.custom.input"  # a custom tool's call: free text (a grammar's), not JSON
    NAME = "name"  # message and function names: only when asked for (the quota estimate reads them)
    # Request definitions the model reads (role `tools`, `response_format` or `prediction`).
    TOOL_DEFINITION = "tools"  # tools[].function / functions[]: description, parameters' schema strings
    RESPONSE_SCHEMA = "response_format"  # response_format.json_schema: description, schema strings
    PREDICTION = "prediction"  # prediction.content (a string or text parts)
    # Answer fields beyond OpenAI's core ones.
    AUDIO_TRANSCRIPT = "audio.transcript"  # OpenAI audio-output models
    CONTENT_TEXT = "content.text"  # a text part of a `content` array (or object), e.g. Mistral's
    CONTENT_THINKING = "content.thinking"  # the text of a Mistral `thinking` content part
    REASONING_TEXT = "reasoning_details.text"  # OpenRouter `reasoning_details[].text`
    REASONING_SUMMARY = "reasoning_details.summary"  # OpenRouter `reasoning_details[].summary`
    THINKING = "thinking_blocks.thinking"  # LiteLLM `thinking_blocks[].thinking`
    # Whole values, read in each chunk on their own (no stream window): a stream sends them whole.
    ANNOTATION = "annotations"  # annotations[].url_citation.url / .title (OpenAI web search)
    OTHER = "other"  # a string leaf of an answer field the walker does not know (walk_leaves.other_strings)

    @property
    def is_json(self) -> bool:
        """Arguments are JSON documents (a string the SDK parses), not prose."""
        return self in _JSON_FIELDS


_JSON_FIELDS = frozenset({Field.TOOL_ARGUMENTS, Field.FUNCTION_ARGUMENTS})
_RESULT_ROLES = frozenset({"tool", "function"})


@dataclass(frozen=True, slots=True)
class Segment:
    """One stored string of a `Text`: `text[start:end]` lives at `path`."""

    path: Path
    start: int
    end: int


class Text(NamedTuple):
    """One string a model reads or writes (possibly joined from several parts).

    `owner_index` is the message index (requests) or the choice index (answers); `role` is the
    message's role (`assistant` for answers). `key` identifies a stream's field across chunks.
    """

    path: Path
    field: Field
    role: str
    owner_index: int  # the message index (requests) or the choice index (answers)
    text: str
    # Empty for a text stored whole at `path` (the common case: no Segment to build).
    segments: tuple[Segment, ...] = ()
    key: tuple[int, Field, int] | None = None

    @property
    def is_json(self) -> bool:
        """Read as a JSON document: call arguments always, a tool or function result when it is one."""
        if self.role not in _RESULT_ROLES:  # the common case first: a user or system text
            return self.field in _JSON_FIELDS
        if self.field in _JSON_FIELDS:
            return True
        if self.text.lstrip()[:1] not in ("{", "["):
            return False
        try:
            orjson.loads(self.text)
        except orjson.JSONDecodeError:
            return False
        return True

    @property
    def parts(self) -> tuple[Segment, ...]:
        """Where the text is stored: one segment per string it was joined from."""
        return self.segments or (Segment(self.path, 0, len(self.text)),)


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace `get_at(root, path)[start:end]` by `replacement`."""

    path: Path
    start: int
    end: int
    replacement: str


def path_text(path: Path) -> str:
    """`("messages", 2, "content", 0, "text")` -> `messages[2].content[0].text`."""
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


def get_at(root: Any, path: Path) -> Any:
    """The value at `path`; KeyError/IndexError/TypeError when the path does not resolve."""
    node = root
    for item in path:
        node = node[item]
    return node


def set_at(root: Any, path: Path, value: Any) -> None:
    """Replace the value at `path` (its parent must exist)."""
    get_at(root, path[:-1])[path[-1]] = value


def single(path: Path, field: Field, role: str, index: int, text: str,
           key: tuple[int, Field, int] | None = None) -> Text:
    """A text stored whole at `path` (no segments)."""
    return Text(path, field, role, index, text, (), key)


def function_texts(base: Path, function: object, field: Field, role: str, index: int,
                   names: bool, key: tuple[int, Field, int] | None = None) -> Iterator[Text]:
    """The `arguments` of a tool call's `function` or a `function_call` at `base` (and its `name`
    when `names`)."""
    if not isinstance(function, dict):
        return
    if names and isinstance(function.get("name"), str):
        yield single((*base, "name"), Field.NAME, role, index, function["name"])
    if isinstance(function.get("arguments"), str):
        yield single((*base, "arguments"), field, role, index, function["arguments"], key)


# The strings of an OpenRouter `reasoning_details[]` item, by key; LiteLLM `thinking_blocks[]`'s.
REASONING_READINGS: tuple[tuple[str, Field], ...] = (
    ("text", Field.REASONING_TEXT), ("summary", Field.REASONING_SUMMARY))
THINKING_READINGS: tuple[tuple[str, Field], ...] = (("thinking", Field.THINKING),)


def thinking_strings(part: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """The texts of a Mistral `thinking` content part at `path`: `thinking` a string, or a list of
    text parts (each on its own), with their paths."""
    value = part.get("thinking")
    if isinstance(value, str):
        yield (*path, "thinking"), value
    for inner, piece in enumerate(value if isinstance(value, list) else ()):
        if isinstance(piece, dict) and isinstance(piece.get("text"), str):
            yield (*path, "thinking", inner, "text"), piece["text"]


def custom_texts(base: Path, custom: object, role: str, index: int, names: bool,
                 key: tuple[int, Field, int] | None = None) -> Iterator[Text]:
    """The `input` of a custom tool's call (`tool_calls[].custom` at `base`; and its `name` when
    `names`): free text, such as a grammar-constrained program."""
    if not isinstance(custom, dict):
        return
    if names and isinstance(custom.get("name"), str):
        yield single((*base, "name"), Field.NAME, role, index, custom["name"])
    if isinstance(custom.get("input"), str):
        yield single((*base, "input"), Field.CUSTOM_INPUT, role, index, custom["input"], key)


def apply_edits(root: Any, edits: list[Edit]) -> None:
    """Apply edits to the strings they name, right to left per string so offsets stay valid.

    Raises KeyError/IndexError/TypeError for a path that does not resolve to a string.
    """
    by_path: dict[Path, list[Edit]] = {}
    for edit in edits:
        by_path.setdefault(edit.path, []).append(edit)
    for path, spans in by_path.items():
        value = get_at(root, path)
        if not isinstance(value, str):
            raise TypeError(f"{path_text(path)} is not a string")
        for edit in sorted(spans, key=lambda e: e.start, reverse=True):
            value = value[:edit.start] + edit.replacement + value[edit.end:]
        set_at(root, path, value)


def text_edits(text: Text, start: int, end: int, replacement: str) -> list[Edit]:
    """Edits that replace `text.text[start:end]`, split over the segments it spans.

    The first segment touched gets the replacement; the rest of the span is removed from the
    others, so a value split across two parts becomes one placeholder.
    """
    edits: list[Edit] = []
    for segment in text.parts:
        low, high = max(start, segment.start), min(end, segment.end)
        if low < high or (low == high == start and segment.start <= start < segment.end):
            edits.append(Edit(segment.path, low - segment.start, high - segment.start,
                              "" if edits else replacement))
    return edits
