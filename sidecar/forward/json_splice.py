"""Finding one member of a top-level JSON object without parsing the values around it.

An embeddings answer is mostly its `data` array (OpenAI's largest, 2,048 vectors of 1,536 floats,
is 62 MB); parsing and re-serialising it only to set `model` would hold a worker's event loop for
most of a second. `member_span` walks the structure with C-speed searches (`bytes.find`, one
compiled regex) and skips arrays of plain numbers in one step, so the caller can parse the rest and
put the array's bytes back unchanged. JSON syntax per RFC 8259.
"""

from __future__ import annotations

import re

_STRUCTURE = re.compile(rb'["\[\]{}]')
_QUOTE, _BACKSLASH, _COLON = 0x22, 0x5C, 0x3A
_OPENERS = frozenset(b"[{")
_WHITESPACE = b" \t\r\n"


def member_span(payload: bytes, key: str) -> tuple[int, int] | None:
    """(start, end) of the value of `key` in the top-level object when that value is an array or an
    object; None when the payload does not look like such an object (the caller parses it whole)."""
    wanted = key.encode()
    depth, pos = 0, 0
    value_at: int | None = None  # where the wanted member's value starts
    while True:
        match = _STRUCTURE.search(payload, pos)
        if match is None:
            return None
        at = match.start()
        char = payload[at]
        if char == _QUOTE:
            end = _string_end(payload, at)
            if end < 0:
                return None
            if depth == 1 and value_at is None and payload[at + 1:end - 1] == wanted:
                colon = _skip_whitespace(payload, end)
                if colon < len(payload) and payload[colon] == _COLON:
                    value_at = _skip_whitespace(payload, colon + 1)
                    if value_at >= len(payload) or payload[value_at] not in _OPENERS:
                        return None
            pos = end
            continue
        if char in _OPENERS:
            if depth == 0 and char != ord("{"):
                return None
            numbers_end = _numbers_array_end(payload, at) if char == ord("[") else -1
            if numbers_end >= 0:
                if value_at == at and depth == 1:
                    return at, numbers_end
                pos = numbers_end
                continue
            depth += 1
        else:
            depth -= 1
            if depth < 0:
                return None
            if depth == 1 and value_at is not None:
                return value_at, at + 1
            if depth == 0:
                return None  # the object ended without the member
        pos = at + 1


def _numbers_array_end(payload: bytes, start: int) -> int:
    """The end of an array at `start` that holds no string, array or object (numbers, literals);
    -1 for any other array. memchr-speed searches instead of a walk over its digits; the numbers
    themselves are not checked (the array's bytes are relayed as the provider sent them)."""
    close = payload.find(b"]", start + 1)
    if close < 0:
        return -1
    for char in (b"[", b"{", b"}", b'"'):
        if payload.find(char, start + 1, close) >= 0:
            return -1
    return close + 1


def _string_end(payload: bytes, start: int) -> int:
    """The index after the string's closing quote (`start` is its opening quote); -1 if unclosed."""
    at = start + 1
    while True:
        at = payload.find(b'"', at)
        if at < 0:
            return -1
        backslashes = 0
        while payload[at - 1 - backslashes] == _BACKSLASH:
            backslashes += 1
        if backslashes % 2 == 0:
            return at + 1
        at += 1


def _skip_whitespace(payload: bytes, at: int) -> int:
    while at < len(payload) and payload[at] in _WHITESPACE:
        at += 1
    return at
