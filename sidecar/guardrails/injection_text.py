"""Fast text passes for the injection heuristic, each giving exactly what its regex form gives.

A 1 MB prompt goes through ``score_injection`` once per request, so the regex passes that visit
every character (``re.sub`` over the whole text, a literal ``in`` per rule word) dominate its cost.
These do the same work with C-speed bytes and string methods; tests compare them with the regex
forms on corpora and generated text.
"""

from __future__ import annotations

import re
from typing import Final

_LEET_BYTES: Final = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
_KEPT: Final = "abcdefghijklmnopqrstuvwxyz' "


def _word_table() -> bytes:
    table = bytearray(b" " * 256)
    for char in _KEPT:
        table[ord(char)] = ord(char)
    for char, letter in _LEET_BYTES.items():
        table[ord(char)] = ord(letter)
    return bytes(table)


def _base64_table() -> bytes:
    table = bytearray(b" " * 256)
    for char in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/":
        table[char] = ord("b")
    return bytes(table)


# Bytes of the UTF-8 form, so every non-ASCII character (all its bytes are >= 0x80) becomes
# spaces, as `[^a-z' ]` does to it; a lone surrogate (JSON allows one) survives "surrogatepass".
_WORD_TABLE: Final = _word_table()
_BASE64_TABLE: Final = _base64_table()
_BASE64_RUN: Final = b"b" * 24
_MULTI_SPACES: Final = re.compile(" {2,}")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def leet_spaced(folded: str) -> str:
    """``folded`` leet-mapped with every character outside a-z, ' and space turned into spaces.

    Unlike ``_NON_WORD.sub(" ", ...)`` a run of such characters becomes a run of spaces, so the
    text equals the regex form once runs of spaces are collapsed in both.
    """
    return _utf8(folded).translate(_WORD_TABLE).decode("ascii")


def collapse_spaces(text: str, passes: int = 4) -> str:
    """Every run of two or more spaces as one space, like ``re.sub(" {2,}", " ", text)``.

    Each ``replace`` halves every run (n spaces become ceil(n / 2)), so prose with its short runs
    settles in a pass or two; longer runs are left to the regex, which a partial collapse
    does not change the result of.
    """
    for _ in range(passes):
        shorter = text.replace("  ", " ")
        if len(shorter) == len(text):
            return text
        text = shorter
    return _MULTI_SPACES.sub(" ", text)


def may_hold_base64_blob(text: str) -> bool:
    """False when ``text`` has no 24 consecutive base64 characters, so the blob regex finds nothing."""
    return _BASE64_RUN in _utf8(text).translate(_BASE64_TABLE)


class LiteralIndex:
    """Answers ``literal in text`` exactly, from the text's distinct words when the text is long.

    A literal without spaces occurs in the text iff it occurs in one of its words, and prose
    repeats its words, so the distinct words are a much shorter haystack. A literal with spaces
    needs its first part ending a word, its last part starting one and any middle part being
    one; only when all hold is the whole text searched.
    """

    __slots__ = ("_joined", "_text", "_words")

    # Below this, splitting the text costs more than scanning it once per literal.
    MIN_CHARS: Final = 16_384

    def __init__(self, text: str) -> None:
        self._text = text
        self._words: frozenset[str] = frozenset()
        self._joined = ""
        if len(text) >= self.MIN_CHARS:
            words = frozenset(text.split(" "))
            joined = " " + " ".join(words) + " "
            if len(joined) < len(text) // 2:  # text of mostly distinct words: scan it directly
                self._words, self._joined = words, joined

    def __contains__(self, literal: object) -> bool:
        if not isinstance(literal, str):
            return False
        if not self._joined:
            return literal in self._text
        if " " not in literal:
            return literal in self._joined
        first, *middle, last = literal.split(" ")
        if first + " " not in self._joined or " " + last not in self._joined:
            return False
        if any(part not in self._words for part in middle):
            return False
        return literal in self._text
