"""The one walker of a chat exchange: every string a model reads or writes, with its path.

Guardrails (input and output), the quota estimate and validation read the exchange through
this module, so a field added here is read by all of them. Field names follow OpenAI's Chat
Completions API (`messages[].content`, `tool_calls[].function.arguments`, `refusal`, ...) plus
the `reasoning_content`/`reasoning` fields of vLLM, DeepSeek and OpenRouter answers.

A path is a tuple of JSON object keys and array indexes from the document's root, e.g.
`("messages", 2, "tool_calls", 0, "function", "arguments")`; `path_text` spells it
`messages[2].tool_calls[0].function.arguments` (the form logs, findings and an external
detector see). `get_at`/`set_at` read and replace the string a path names, in place.

Request (`request_texts`): for every message of every role, a string `content`, or the text
parts of a `content` array read *joined with no separator* as one `Text` (so a value split
across two parts is one value; each part is one `Segment`), `refusal`, `reasoning_content`,
`reasoning`, assistant `tool_calls[].function.arguments` and the legacy
`function_call.arguments` (JSON texts). Tool and function results are the `content` of
`tool`/`function` messages (string or parts); `Text.is_json` says whether a text is read as JSON
(arguments always; a tool or function result when it parses as a JSON object or array).

Response (`completion_texts`) and stream chunks (`chunk_texts`), for every choice: `content`,
`refusal`, `reasoning_content`, `reasoning`, every tool call's `function.arguments` and
`function_call.arguments`. A stream text also has a `key`, (choice index, field, tool call
index), that is stable across chunks: the deltas of one field of one choice (or of one
parallel tool call, keyed by its `index`) form one stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from sidecar.core.walk_leaves import Path as Path  # re-exported: the walker's path types
from sidecar.core.walk_leaves import PathItem as PathItem
from sidecar.core.walk_leaves import other_strings, schema_strings


class Field(StrEnum):
    """The kind of a text the walker yields; the value is its name in paths and findings."""

    CONTENT = "content"
    REFUSAL = "refusal"
    REASONING_CONTENT = "reasoning_content"
    REASONING = "reasoning"
    TOOL_ARGUMENTS = "tool_calls.function.arguments"
    FUNCTION_ARGUMENTS = "function_call.arguments"
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
_CONTENT = Field.CONTENT  # a module constant: cheaper than the enum's attribute lookup per message
# Plain-string fields of an answer's message (or delta), in the order they are read.
ANSWER_STRING_FIELDS = (Field.CONTENT, Field.REASONING_CONTENT, Field.REASONING, Field.REFUSAL)
_STRING_FIELDS = {field.value: field for field in ANSWER_STRING_FIELDS}
# Message (delta) members that are not answer text, or are read by `_answer_calls`.
_NOT_TEXT = frozenset({"role", "tool_calls", "function_call"})
# Fields whose texts are whole values: never a stream window, and no stream `key`.
WHOLE_VALUE_FIELDS = frozenset({Field.ANNOTATION, Field.OTHER})


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


def _single(path: Path, field: Field, role: str, index: int, text: str,
            key: tuple[int, Field, int] | None = None) -> Text:
    return Text(path, field, role, index, text, (), key)


def _content(path: Path, role: str, index: int, content: object, field: Field = _CONTENT) -> Iterator[Text]:
    if isinstance(content, str):
        yield _single(path, field, role, index, content)
        return
    if not isinstance(content, list):
        return
    pieces: list[str] = []
    segments: list[Segment] = []
    offset = 0
    for part_index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            continue
        name = "text" if part.get("type") == "text" else "refusal"
        value = part.get(name)
        if isinstance(value, str):
            pieces.append(value)
            segments.append(Segment((*path, part_index, name), offset, offset + len(value)))
            offset += len(value)
    if segments:
        yield Text(path, field, role, index, "".join(pieces), tuple(segments))


def _function_texts(base: Path, function: object, field: Field, role: str, index: int,
                    names: bool, key: tuple[int, Field, int] | None = None) -> Iterator[Text]:
    if not isinstance(function, dict):
        return
    if names and isinstance(function.get("name"), str):
        yield _single((*base, "name"), Field.NAME, role, index, function["name"])
    if isinstance(function.get("arguments"), str):
        yield _single((*base, "arguments"), field, role, index, function["arguments"], key)


def request_texts(body: dict[str, Any], *, names: bool = False, definitions: bool = True) -> list[Text]:
    """Every text of a request's `messages`, then of its definitions (`tools`, `functions`,
    `response_format`, `prediction`; unless `definitions` is False), in reading order (see the
    module docstring).

    A list built in one loop: cheaper than a generator for the usual two or three messages.
    """
    messages = body.get("messages")
    out: list[Text] = []
    if isinstance(messages, list):
        _message_texts(messages, names, out)
    # Four lookups when none is present: a plain chat request costs nothing more.
    if definitions and ("tools" in body or "functions" in body or "response_format" in body
                        or "prediction" in body):
        _definition_texts(body, out)
    return out


def _message_texts(messages: list[Any], names: bool, out: list[Text]) -> None:
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, str):  # the common case
            out.append(Text(("messages", index, "content"), _CONTENT, role, index, content))
        elif content is not None:
            out.extend(_content(("messages", index, "content"), role, index, content))
        # Any key beyond role and content: refusal, name, tool or function calls.
        if len(message) > ("role" in message) + ("content" in message):
            out.extend(_message_extras(message, index, role, names))


def _definition_texts(body: dict[str, Any], out: list[Text]) -> None:
    """The strings of tool and function definitions, the response schema and the prediction.

    Role and field are the member's name (`tools`, `response_format`, `prediction`; legacy
    `functions` read as `tools`), `owner_index` is -1 (not a message). Each schema string is
    one text stored whole at its path, so a mask replaces the JSON value in place.
    """
    for member in ("tools", "functions"):
        items = body.get(member)
        for position, item in enumerate(items if isinstance(items, list) else ()):
            if not isinstance(item, dict):
                continue
            if member == "functions":
                _schema_texts(item, (member, position), Field.TOOL_DEFINITION, out)
                continue
            for kind in ("function", "custom"):  # custom tools (free-form input) have a description too
                if isinstance(item.get(kind), dict):
                    _schema_texts(item[kind], (member, position, kind), Field.TOOL_DEFINITION, out)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"), dict):
        _schema_texts(response_format["json_schema"], ("response_format", "json_schema"), Field.RESPONSE_SCHEMA, out)
    prediction = body.get("prediction")
    if isinstance(prediction, dict) and prediction.get("content") is not None:
        out.extend(_content(("prediction", "content"), "prediction", -1, prediction["content"], Field.PREDICTION))


def _schema_texts(schema: dict[str, Any], path: Path, field: Field, out: list[Text]) -> None:
    role = field.value
    out.extend(Text(where, field, role, -1, value) for where, value in schema_strings(schema, path))


def _message_extras(message: dict[str, Any], index: int, role: str, names: bool) -> Iterator[Text]:
    base: Path = ("messages", index)
    for field in (Field.REFUSAL, Field.REASONING_CONTENT, Field.REASONING):
        if isinstance(message.get(field.value), str):
            yield _single((*base, field.value), field, role, index, message[field.value])
    if names and isinstance(message.get("name"), str):
        yield _single((*base, "name"), Field.NAME, role, index, message["name"])
    calls = message.get("tool_calls")
    for call_index, call in enumerate(calls if isinstance(calls, list) else ()):
        if isinstance(call, dict):
            yield from _function_texts((*base, "tool_calls", call_index, "function"), call.get("function"),
                                       Field.TOOL_ARGUMENTS, role, index, names)
    yield from _function_texts((*base, "function_call"), message.get("function_call"),
                               Field.FUNCTION_ARGUMENTS, role, index, names)


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
                for key, field in (("text", Field.REASONING_TEXT), ("summary", Field.REASONING_SUMMARY)):
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
        elif kind == "thinking" and isinstance(part.get("thinking"), str):
            out.append(_answer_text((*where, "thinking"), Field.CONTENT_THINKING, number, part["thinking"], stream))
        elif kind == "thinking" and isinstance(part.get("thinking"), list):
            for inner, piece in enumerate(part["thinking"]):
                if isinstance(piece, dict) and isinstance(piece.get("text"), str):
                    out.append(_answer_text((*where, "thinking", inner, "text"), Field.CONTENT_THINKING, number,
                                            piece["text"], stream))
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
        yield from _function_texts((*base, "tool_calls", call_position, "function"), call.get("function"),
                                   Field.TOOL_ARGUMENTS, "assistant", number, False, key)
    if "function_call" in message:
        key = (number, Field.FUNCTION_ARGUMENTS, 0) if stream else None
        yield from _function_texts((*base, "function_call"), message["function_call"],
                                   Field.FUNCTION_ARGUMENTS, "assistant", number, False, key)


def completion_texts(completion: dict[str, Any]) -> list[Text]:
    """Every text of a whole completion's `choices[].message`."""
    return _answer_texts(completion.get("choices"), "message", stream=False)


def chunk_texts(chunk: dict[str, Any], values: list[Text] | None = None) -> list[Text]:
    """Every stream text of a chunk's `choices[].delta`, each with its stream `key`.

    Whole values (`annotations`, string leaves of fields the walker does not know: keyless,
    read in each chunk on their own) are appended to `values` when it is given, else skipped.
    """
    return _answer_texts(chunk.get("choices"), "delta", stream=True, values=values)


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
