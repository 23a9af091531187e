"""Placeholder masking with per-request consistent numbering."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sidecar.core.entity import CREDIT_CARD, EMAIL, IBAN, PHONE, SSN, Entity

from .view import View

_SEPARATORS: Final = re.compile(r"[^0-9A-Za-z]")
_LABEL: Final = re.compile(r"\[[^\[\]\s]+_\d+\]")


def _normalise(category: str, value: str) -> str:
    """Same value, different spelling -> same placeholder.

    "4111 1111 1111 1111" and "4111-1111-1111-1111" are one card; e-mail
    addresses are case-insensitive in practice.
    """
    if category in (CREDIT_CARD, SSN, IBAN, PHONE):
        return _SEPARATORS.sub("", value).upper()
    if category == EMAIL:
        return value.lower()
    return value


class MaskNumbering:
    """Hands out ``[EMAIL_1]``, ``[PHONE_1]``, ``[EMAIL_2]`` ... placeholders.

    One instance lives for one request: the same value seen again (in another
    message of the conversation, or later in a stream) gets the same
    placeholder, so the model can still tell "the same person" apart from
    "a different person".  State is per instance, never module-level.
    """

    __slots__ = ("_assigned", "_counters", "_reserved")

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._assigned: dict[tuple[str, str], str] = {}
        self._reserved: set[str] = set()  # labels another masker already used (webhook guardrails)

    def placeholder(self, category: str, value: str) -> str:
        key = (category, _normalise(category, value))
        existing = self._assigned.get(key)
        if existing is not None:
            return existing
        number = self._counters.get(category, 0) + 1
        label = f"[{category.upper()}_{number}]"
        while label in self._reserved:  # empty unless `reserve` was called: one failed lookup
            number += 1
            label = f"[{category.upper()}_{number}]"
        self._counters[category] = number
        self._assigned[key] = label
        return label

    def reserve(self, text: str) -> None:
        """Never hand out a label `[CATEGORY_N]` that already appears in `text` (a placeholder
        another masker of the same request put there for another value)."""
        self._reserved.update(_LABEL.findall(text))

    def count(self, category: str) -> int:
        """How many distinct values of ``category`` were masked so far."""
        return self._counters.get(category, 0)


def mask_text(text: str, entities: Sequence[Entity], numbering: MaskNumbering) -> str:
    """Replace each entity span with its placeholder.

    ``entities`` must be non-overlapping (as returned by ``find_entities``);
    they are processed in start order so numbering follows reading order.
    """
    parts: list[str] = []
    cursor = 0
    for entity in sorted(entities, key=lambda e: e.start):
        if entity.start < cursor:
            raise ValueError("mask_text needs non-overlapping entities")
        parts.append(text[cursor : entity.start])
        parts.append(numbering.placeholder(entity.category, text[entity.start : entity.end]))
        cursor = entity.end
    parts.append(text[cursor:])
    return "".join(parts)


# A mask span in raw coordinates: (start, end, placeholder).
Replacement = tuple[int, int, str]
_QUOTE_OR_ESCAPE: Final = re.compile(r'\\.|\\$|"', re.DOTALL)
_NUMBER_CHARS: Final = frozenset("+-0123456789.eE")


@dataclass(frozen=True, slots=True)
class JsonState:
    """Where a JSON lexer stands: inside a string literal, and right after a backslash in one."""

    in_string: bool = False
    escaped: bool = False

    def advance(self, text: str) -> JsonState:
        """The state after reading `text` (a piece of a JSON document)."""
        in_string, escaped = self.in_string, self.escaped
        start = 0
        if escaped and text:
            start, escaped = 1, False
        for match in _QUOTE_OR_ESCAPE.finditer(text, start):
            token = match.group()
            if token == '"':
                in_string = not in_string
            elif token == "\\" and in_string:
                escaped = True  # a backslash at the very end: the next piece starts escaped
        return JsonState(in_string, escaped)


def json_safe(raw: str, spans: Sequence[Replacement], state: JsonState = JsonState()) -> list[Replacement]:
    """Spans adjusted so that replacing them keeps a JSON document valid.

    A span inside a string literal stays (placeholders need no escaping); a span that starts
    outside one (a bare JSON number such as a card number) widens to the whole number token and
    its placeholder becomes a JSON string: `4111111111111111` -> `"[CREDIT_CARD_1]"`.
    `state` is the lexer state at `raw[0]` (streams pass the state where their window starts).
    """
    out: list[Replacement] = []
    cursor = 0
    for start, end, placeholder in sorted(spans):
        state = state.advance(raw[cursor:start])
        cursor = start
        if state.in_string:
            out.append((start, end, placeholder))
            continue
        low, high = start, end
        while low > 0 and raw[low - 1] in _NUMBER_CHARS:
            low -= 1
        while high < len(raw) and raw[high] in _NUMBER_CHARS:
            high += 1
        if out and low < out[-1][1]:
            low = out[-1][1]
        out.append((low, high, f'"{placeholder}"'))
    return out


def replace_spans(raw: str, spans: Sequence[Replacement]) -> str:
    """`raw` with each (non-overlapping) span replaced by its placeholder."""
    parts: list[str] = []
    cursor = 0
    for start, end, placeholder in sorted(spans):
        parts.append(raw[cursor:start])
        parts.append(placeholder)
        cursor = max(cursor, end)
    parts.append(raw[cursor:])
    return "".join(parts)


def view_replacements(view: View, entities: Sequence[Entity], numbering: MaskNumbering) -> list[Replacement]:
    """Raw spans and placeholders for entities found in `view.text`, numbered in reading order.

    The placeholder's numbering reads the normalised value, so `４１１１…` and `4111…` are one card.
    """
    out: list[Replacement] = []
    for entity in sorted(entities, key=lambda e: e.start):
        start, end = view.raw_span(entity.start, entity.end)
        out.append((start, end, numbering.placeholder(entity.category, view.text[entity.start:entity.end])))
    return out
