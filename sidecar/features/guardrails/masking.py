"""Placeholder masking with per-request consistent numbering."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

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
_QUOTE_OR_ESCAPE: Final = re.compile(r'\\u[0-9A-Fa-f]{0,4}|\\.|\\$|"', re.DOTALL)
# What ends a bare JSON token (a number, `true`, `false`, `null`): structure, quotes, whitespace.
_NOT_BARE: Final = frozenset('{}[],:" \t\n\r')


@dataclass(frozen=True, slots=True)
class JsonState:
    """Where a JSON lexer stands: inside a string literal, right after a backslash in one, and how
    many hex digits of a `\\uXXXX` escape are still to come (a piece may end inside one)."""

    in_string: bool = False
    escaped: bool = False
    hex_left: int = 0

    def advance(self, text: str) -> JsonState:
        """The state after reading `text` (a piece of a JSON document)."""
        in_string, escaped, hex_left = self.in_string, self.escaped, self.hex_left
        start = 0
        if escaped and text:
            hex_left = 4 if text[0] == "u" else 0
            start, escaped = 1, False
        if hex_left:
            taken = min(hex_left, len(text) - start)
            start, hex_left = start + taken, hex_left - taken
        for match in _QUOTE_OR_ESCAPE.finditer(text, start):
            token = match.group()
            if token == '"':
                in_string = not in_string
            elif token == "\\" and in_string:
                escaped = True  # a backslash at the very end: the next piece starts escaped
            elif in_string and token.startswith("\\u") and match.end() == len(text):
                hex_left = 6 - len(token)  # `\\u00` at the very end: two digits to come
        return JsonState(in_string, escaped, hex_left)

    def escape_begun(self) -> int:
        """How many characters of an escape sequence were read before this state (0: none)."""
        return 1 if self.escaped else 6 - self.hex_left if self.hex_left else 0


def json_safe(raw: str, spans: Sequence[Replacement], state: JsonState = JsonState()) -> list[Replacement]:
    """Spans adjusted so that replacing them keeps a JSON document valid, whatever the placeholder.

    Each span is cut into the JSON values it touches; the structure between them (quotes, `:`,
    `,`, brackets, whitespace) stays. The part of a string literal inside the span gets the
    placeholder escaped as string content (`C:\\x`, `a"b` are safe; built-in `[EMAIL_1]` labels
    need no escaping); an escape sequence the span cuts is taken whole. A bare token the span
    touches (a number such as a card number, `true`, `null`) is replaced whole by the placeholder
    as a JSON string: `4111111111111111` -> `"[CREDIT_CARD_1]"`. A span that covers only structure
    replaces nothing. `state` is the lexer state at `raw[0]` (streams pass the state where their
    window starts); the result is sorted and non-overlapping.
    """
    out: list[Replacement] = []
    cursor = 0
    for start, end, placeholder in sorted(spans):
        if out and start < out[-1][1]:
            start = out[-1][1]  # an earlier span was widened over this one's start
            if start >= end:
                continue
        state = state.advance(raw[cursor:start])
        cursor = start
        content = orjson.dumps(placeholder).decode()
        for low, high, in_string in _value_pieces(raw, start, end, state):
            if out and low < out[-1][1]:
                low = out[-1][1]
            if low < high:
                out.append((low, high, content[1:-1] if in_string else content))
    return out


def _value_pieces(raw: str, start: int, end: int, state: JsonState) -> list[tuple[int, int, bool]]:
    """The parts of `raw[start:end]` that are string content or bare tokens, as (low, high,
    in_string), widened over escape sequences and bare tokens they cut; `state` is at `start`."""
    pieces: list[tuple[int, int, bool]] = []
    in_string, i = state.in_string, start
    begun = state.escape_begun() if in_string else 0
    if begun:
        # `start` is inside an escape sequence: take the sequence whole, or (a stream window
        # starting inside it, its beginning already sent) leave the rest of it alone.
        left = state.hex_left or (5 if raw.startswith("u", start) else 1)
        i = start - begun if start >= begun else start + left
    low = i
    while i < end:
        char = raw[i]
        if in_string:
            if char == "\\":
                step = 6 if raw.startswith("u", i + 1) else 2
                if i + step > len(raw):  # the escape goes on past this text (a stream window)
                    break
                i += step
            elif char == '"':
                if low < i:
                    pieces.append((low, i, True))
                in_string, i = False, i + 1
            else:
                i += 1
            continue
        if char == '"':
            in_string, i = True, i + 1
            low = i
        elif char not in _NOT_BARE:
            token_start, i = i, i + 1
            while token_start > 0 and raw[token_start - 1] not in _NOT_BARE:
                token_start -= 1
            while i < len(raw) and raw[i] not in _NOT_BARE:
                i += 1
            pieces.append((token_start, i, False))
        else:
            i += 1
    if in_string and low < i:
        pieces.append((low, min(i, len(raw)), True))
    return pieces


def bare_token_cut(raw: str, cut: int, state: JsonState = JsonState()) -> int:
    """`cut` (a stream window's release point in `raw`, more text to come) moved back to the start
    of a bare JSON token (a number, `true`) it would split, or that may go on past `raw`: a mask
    later in the token could not make the half already sent part of a JSON string. `state` is the
    lexer state at `raw[0]`."""
    if cut == 0 or raw[cut - 1] in _NOT_BARE or (cut < len(raw) and raw[cut] in _NOT_BARE):
        return cut
    low = cut - 1
    while low > 0 and raw[low - 1] not in _NOT_BARE:
        low -= 1
    return cut if state.advance(raw[:low]).in_string else low


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
