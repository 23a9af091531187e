"""Today's texts as `(path, text)` pairs in the exchange walker's paths.

Input: what `features.guardrails.messages.message_texts` reads (content strings and text parts), as
`messages[I].content` or `messages[I].content[J].text`. Output: each choice's `message.content`, as
`choices[I].message.content` (a stream's `delta.content` is addressed the same way: it is that
field, arriving in pieces). Once the shared walker lands (issue 13) these two functions are the
only place to re-point: it yields every field, with the same path syntax.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sidecar.features.guardrails.messages import WHOLE_CONTENT, MessageText, message_texts
from sidecar.features.guardrails.webhook.wire import Text

MessageAddress = tuple[int, int]  # (message index, part index or WHOLE_CONTENT), as the mask edits use


def message_path(text: MessageText) -> str:
    if text.part_index == WHOLE_CONTENT:
        return f"messages[{text.message_index}].content"
    return f"messages[{text.message_index}].content[{text.part_index}].text"


def input_texts(messages: list[dict[str, Any]], user_only: bool) -> list[tuple[Text, MessageAddress]]:
    """The request's texts a guardrail reads (`messages: user` reads the user's only), with addresses."""
    found: Iterable[MessageText] = message_texts(messages)
    return [(Text(message_path(t), t.text, role=t.role), (t.message_index, t.part_index))
            for t in found if not user_only or t.role == "user"]


def choice_path(index: int) -> str:
    return f"choices[{index}].message.content"


def completion_texts(completion: dict[str, Any]) -> list[tuple[Text, dict[str, Any]]]:
    """Each choice's answer text with the message holding it (so a mask can write it back)."""
    found = []
    for position, choice in enumerate(completion.get("choices") or ()):
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, str) and content:
            index = choice.get("index", position)
            found.append((Text(choice_path(index), content, role="assistant"), message))
    return found
