"""Placeholder masking with per-request consistent numbering."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from .entity import CREDIT_CARD, EMAIL, IBAN, PHONE, SSN, Entity

_SEPARATORS: Final = re.compile(r"[^0-9A-Za-z]")


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

    __slots__ = ("_assigned", "_counters")

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._assigned: dict[tuple[str, str], str] = {}

    def placeholder(self, category: str, value: str) -> str:
        key = (category, _normalise(category, value))
        existing = self._assigned.get(key)
        if existing is not None:
            return existing
        number = self._counters.get(category, 0) + 1
        self._counters[category] = number
        label = f"[{category.upper()}_{number}]"
        self._assigned[key] = label
        return label

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
