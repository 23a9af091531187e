"""The one walker of a chat exchange: every string a model reads or writes, with its path.

Guardrails (input and output), the quota estimate and validation read the exchange through
this module, so a field added here is read by all of them. Field names follow OpenAI's Chat
Completions API (`messages[].content`, `tool_calls[].function.arguments`, `refusal`, `tools`,
`response_format`, `prediction`, `audio`, `annotations`, ...) plus the `reasoning_content` /
`reasoning` fields of vLLM, DeepSeek and OpenRouter answers, OpenRouter's `reasoning_details`,
LiteLLM's `thinking_blocks` and Mistral's content parts. The value types live in `walk_types`,
the answer side in `walk_answer` (completions and stream chunks; re-exported here), the
readers of JSON Schema objects and unknown values in `walk_leaves`.

A path is a tuple of JSON object keys and array indexes from the document's root, e.g.
`("messages", 2, "tool_calls", 0, "function", "arguments")`; `path_text` spells it
`messages[2].tool_calls[0].function.arguments` (the form logs, findings and an external
detector see). `get_at`/`set_at` read and replace the string a path names, in place.

Request (`request_texts`): for every message of every role, a string `content`, or the text
parts of a `content` array read *joined with no separator* as one `Text` (so a value split
across two parts is one value; each part is one `Segment`), `refusal`, `reasoning_content`,
`reasoning`, `reasoning_details[].text`/`.summary`, `thinking_blocks[].thinking` and the text
of Mistral `thinking` content parts (reasoning sent back), assistant `tool_calls[].function.arguments`
(a custom tool's `tool_calls[].custom.input`, free text) and the legacy
`function_call.arguments` (JSON texts). Tool and function results are the `content` of
`tool`/`function` messages (string or parts); `Text.is_json` says whether a text is read as JSON
(arguments always; a tool or function result when it parses as a JSON object or array).

Then the definitions the model reads (only those present: a request without them costs four
dict lookups): `tools[].function` (and `tools[].custom`) and legacy `functions[]`: the
`description` and the strings of the `parameters` schema a model reads (`walk_leaves.schema_strings`:
descriptions, titles, enums, consts, defaults, examples); `response_format.json_schema`: its
`description` and its schema's strings likewise; `prediction.content` (a string, or text parts
joined as above). Each schema string is one text stored whole at its path (a JSON value in the
body, not a JSON text), role and field `tools`, `response_format` or `prediction`, owner -1.
Binary parts (`file.file_data`, `input_audio`, `image_url` data URLs) are not read.

Response (`completion_texts`) and stream chunks (`chunk_texts`): see `walk_answer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sidecar.core.walk_answer import ANSWER_STRING_FIELDS as ANSWER_STRING_FIELDS  # re-exported
from sidecar.core.walk_answer import chunk_texts as chunk_texts
from sidecar.core.walk_answer import completion_texts as completion_texts
from sidecar.core.walk_leaves import Path as Path
from sidecar.core.walk_leaves import PathItem as PathItem
from sidecar.core.walk_leaves import schema_strings
from sidecar.core.walk_types import (
    REASONING_READINGS,
    THINKING_READINGS,
    custom_texts,
    function_texts,
    single,
    thinking_strings,
)
from sidecar.core.walk_types import Edit as Edit
from sidecar.core.walk_types import Field as Field
from sidecar.core.walk_types import Segment as Segment
from sidecar.core.walk_types import Text as Text
from sidecar.core.walk_types import apply_edits as apply_edits
from sidecar.core.walk_types import get_at as get_at
from sidecar.core.walk_types import path_text as path_text
from sidecar.core.walk_types import set_at as set_at
from sidecar.core.walk_types import text_edits as text_edits

_CONTENT = Field.CONTENT  # a module constant: cheaper than the enum's attribute lookup per message
# Item lists of an answer a client may send back in its messages: (member, ((key, field), ...)).
_ECHOED_ITEMS = (("reasoning_details", REASONING_READINGS), ("thinking_blocks", THINKING_READINGS))


def _content(path: Path, role: str, index: int, content: object, field: Field = _CONTENT) -> Iterator[Text]:
    if isinstance(content, str):
        yield single(path, field, role, index, content)
        return
    if not isinstance(content, list):
        return
    pieces: list[str] = []
    segments: list[Segment] = []
    thinking: list[Text] = []
    offset = 0
    for part_index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            if isinstance(part, dict) and part.get("type") == "thinking":  # a Mistral answer sent back
                thinking.extend(_thinking_part((*path, part_index), part, role, index))
            continue
        name = "text" if part.get("type") == "text" else "refusal"
        value = part.get(name)
        if isinstance(value, str):
            pieces.append(value)
            segments.append(Segment((*path, part_index, name), offset, offset + len(value)))
            offset += len(value)
    if segments:
        yield Text(path, field, role, index, "".join(pieces), tuple(segments))
    yield from thinking


def _thinking_part(path: Path, part: dict[str, Any], role: str, index: int) -> Iterator[Text]:
    """The text of a Mistral `thinking` part: `thinking` a string, or text parts (each on its own)."""
    for where, value in thinking_strings(part, path):
        yield single(where, Field.CONTENT_THINKING, role, index, value)


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
            yield single((*base, field.value), field, role, index, message[field.value])
    for member, readings in _ECHOED_ITEMS:  # reasoning a client sends back with an assistant message
        items = message.get(member)
        for position, item in enumerate(items if isinstance(items, list) else ()):
            for key, field in readings:
                if isinstance(item, dict) and isinstance(item.get(key), str):
                    yield single((*base, member, position, key), field, role, index, item[key])
    if names and isinstance(message.get("name"), str):
        yield single((*base, "name"), Field.NAME, role, index, message["name"])
    calls = message.get("tool_calls")
    for call_index, call in enumerate(calls if isinstance(calls, list) else ()):
        if isinstance(call, dict):
            yield from function_texts((*base, "tool_calls", call_index, "function"), call.get("function"),
                                       Field.TOOL_ARGUMENTS, role, index, names)
            yield from custom_texts((*base, "tool_calls", call_index, "custom"), call.get("custom"), role, index,
                                    names)
    yield from function_texts((*base, "function_call"), message.get("function_call"),
                               Field.FUNCTION_ARGUMENTS, role, index, names)
