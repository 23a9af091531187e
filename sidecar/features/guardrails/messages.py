"""The texts a guardrail reads in a chat request, addressed so edits can find them again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

WHOLE_CONTENT = -1  # part index of a message whose content is a plain string


@dataclass(frozen=True, slots=True)
class MessageText:
    message_index: int
    part_index: int  # WHOLE_CONTENT, or the index of a text part
    role: str
    text: str


def message_texts(messages: list[dict[str, Any]]) -> Iterator[MessageText]:
    for index, message in enumerate(messages):
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, str):
            yield MessageText(index, WHOLE_CONTENT, role, content)
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    yield MessageText(index, part_index, role, part["text"])


def replace_text(messages: list[dict[str, Any]], message_index: int, part_index: int, text: str) -> None:
    message = messages[message_index]
    if part_index == WHOLE_CONTENT:
        message["content"] = text
    else:
        message["content"][part_index]["text"] = text


def get_text(messages: list[dict[str, Any]], message_index: int, part_index: int) -> str:
    content = messages[message_index]["content"]
    return str(content if part_index == WHOLE_CONTENT else content[part_index]["text"])
