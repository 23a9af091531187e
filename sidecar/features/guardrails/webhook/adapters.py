"""What a webhook guardrail sends, read through the exchange walker (`sidecar/core/walk.py`).

Every text the walker yields is sent, addressed by the walker's path spelled by `path_text`:

- chat request: `messages[I].content` (a string, or a `content` array's text parts joined with no
  separator, as the built-in guardrails read them), `messages[I].refusal`,
  `messages[I].reasoning_content`, `messages[I].reasoning`,
  `messages[I].tool_calls[J].function.arguments`, `messages[I].function_call.arguments`; tool and
  function results are the `content` of `tool`/`function` messages;
- embeddings request: each string of `input` as `input[I]` (role `user`);
- chat request definitions: `tools[I].function.description` and the schema strings of
  `tools[I].function.parameters` (descriptions, titles, enums, consts, defaults, examples),
  `functions[I]...` likewise, `response_format.json_schema.description` and its schema's
  strings, `prediction.content` (roles `tools`, `response_format`, `prediction`);
- whole completion: for every choice, `choices[I].message.content` (or each text part
  `content[K].text`, thinking part `content[K].thinking[L].text`), `.refusal`,
  `.reasoning_content`, `.reasoning`, `.tool_calls[J].function.arguments`,
  `.function_call.arguments`, `.audio.transcript`, `.reasoning_details[K].text` / `.summary`,
  `.thinking_blocks[K].thinking`, `.annotations[K].url_citation.url` / `.title`, and the string
  leaves of unknown members by their paths;
- stream: the same fields of `choices[I].delta`, one text per field stream (choice `index`, and
  the tool call's `index` for arguments), whatever position a delta had in its chunk; content
  parts as `choices[I].delta.content.text` (all text parts of the choice) and
  `.content.thinking`, reasoning items as `choices[I].delta.reasoning_details[N].text` (the
  item's `index`). Annotations and unknown members of a delta arrive whole in one chunk: the
  stream guard sends them whole, at their paths, in one call for that chunk (output_guard.py).

Texts are sent as the client or the provider wrote them (not the normalised view the built-in
detectors read): a detector's spans then index exactly the characters a mask replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.core.walk import Edit, Field, Path, path_text, request_texts, text_edits
from sidecar.core.walk import Text as WalkText
from sidecar.core.walk import completion_texts as walk_completion_texts
from sidecar.features.guardrails.masking import Replacement, json_safe
from sidecar.features.guardrails.webhook.wire import Text

Sent = tuple[Text, WalkText]
"""A text as the detector gets it, and the walker's text it came from (where a mask goes)."""


def sent(text: WalkText, offset: int = 0) -> Text:
    """The wire text of a walker text: its path spelled `messages[2].tool_calls[0].function.arguments`."""
    return Text(path_text(text.path), text.text, role=text.role, offset=offset)


def input_texts(body: dict[str, Any], user_only: bool) -> list[Sent]:
    """Every text of a chat request the walker yields (`messages: user`: the user's only)."""
    return [(sent(t), t) for t in request_texts(body) if not user_only or t.role == "user"]


def embeddings_texts(inputs: Sequence[str]) -> list[Text]:
    """The strings of an embeddings `input`, as `input[I]` texts of role `user`."""
    return [Text(f"input[{index}]", value, role="user") for index, value in enumerate(inputs)]


def completion_texts(completion: dict[str, Any]) -> list[Sent]:
    """Every text of every choice of a whole completion."""
    return [(sent(t), t) for t in walk_completion_texts(completion)]


def stream_path(key: tuple[int, Field, int]) -> str:
    """The path of one field stream, from its walker key (choice index, field, tool call index):
    `choices[0].delta.content`, `choices[0].delta.tool_calls[1].function.arguments`,
    `choices[0].delta.audio.transcript`, `choices[0].delta.content.text` (the text parts of
    `content`, whatever their positions), `choices[0].delta.reasoning_details[1].text` (the
    item's `index`)."""
    index, field, call = key
    suffix: Path = (field.value,)
    if field is Field.TOOL_ARGUMENTS:
        suffix = ("tool_calls", call, "function", "arguments")
    elif field is Field.CUSTOM_INPUT:
        suffix = ("tool_calls", call, "custom", "input")
    elif field is Field.FUNCTION_ARGUMENTS:
        suffix = ("function_call", "arguments")
    elif field in (Field.REASONING_TEXT, Field.REASONING_SUMMARY):
        suffix = ("reasoning_details", call, field.value.rpartition(".")[2])
    return path_text(("choices", index, "delta", *suffix))


def mask_edits(text: WalkText, spans: Sequence[Replacement], taken: Sequence[Edit]) -> list[Edit]:
    """Walker edits that replace `spans` (raw offsets into `text.text`, with their placeholders).

    Spans that overlap an edit already in `taken` (a built-in mask, an earlier guardrail's) are
    dropped; a JSON text (arguments, a JSON tool result) is masked so it stays valid JSON
    (`masking.json_safe`: a bare number becomes a string placeholder); a text joined from several
    content parts is edited across its parts (`walk.text_edits`).
    """
    occupied = [(segment.start + edit.start, segment.start + edit.end)
                for segment in text.parts for edit in taken if edit.path == segment.path]
    free = [s for s in sorted(spans) if not _overlaps(s, occupied)]
    if free and text.is_json:
        free = [s for s in json_safe(text.text, free) if not _overlaps(s, occupied)]
    return [edit for start, end, placeholder in free for edit in text_edits(text, start, end, placeholder)]


def _overlaps(span: Replacement, occupied: Sequence[tuple[int, int]]) -> bool:
    start, end = span[0], span[1]
    return any(start < high and low < end for low, high in occupied)
