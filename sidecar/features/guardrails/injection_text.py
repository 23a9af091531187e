"""Fast text passes for the injection heuristic, each giving exactly what its regex form gives.

A 1 MB prompt goes through ``score_injection`` once per request, so the regex passes that visit
every character (``re.sub`` over the whole text, a literal ``in`` per rule word) dominate its cost.
These do the same work with C-speed bytes and string methods; tests compare them with the regex
forms on corpora and generated text.
"""

from __future__ import annotations

import re
from typing import Final

# The leet mapping of the injection heuristic (its `_LEET` table is built from this).
LEET: Final = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
_KEPT: Final = "abcdefghijklmnopqrstuvwxyz' "


def _word_table(other: str) -> bytes:
    # Bytes of the UTF-8 form, so every non-ASCII character (all its bytes are >= 0x80) becomes
    # `other`, as `[^a-z' ]` does to it; a lone surrogate (JSON allows one) survives "surrogatepass".
    table = bytearray(other.encode("ascii") * 256)
    for char in _KEPT:
        table[ord(char)] = ord(char)
    for char, letter in LEET.items():
        table[ord(char)] = ord(letter)
    return bytes(table)


def _base64_table() -> bytes:
    table = bytearray(b" " * 256)
    for char in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/":
        table[char] = ord("b")
    return bytes(table)


# Other characters become a mark first, so their runs collapse apart from the real spaces.
_MARK: Final = "\x01"
_MARK_TABLE: Final = _word_table(_MARK)
_MARK_RUNS: Final = re.compile(_MARK + "{2,}")
_SPACE_RUNS: Final = re.compile(" {2,}")
_BASE64_TABLE: Final = _base64_table()
_BASE64_RUN: Final = b"b" * 24


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def word_spaced(folded: str) -> str:
    """Exactly ``_NON_WORD.sub(" ", folded.translate(_LEET))``: each run of characters outside
    a-z, ' and space (after the leet mapping) as one space, real spaces kept as they are."""
    marked = _utf8(folded).translate(_MARK_TABLE).decode("ascii")
    return _collapse_runs(marked, _MARK, _MARK_RUNS).replace(_MARK, " ")


def collapse_spaces(text: str) -> str:
    """Every run of two or more spaces as one space, like ``re.sub(" {2,}", " ", text)``."""
    return _collapse_runs(text, " ", _SPACE_RUNS)


def _collapse_runs(text: str, char: str, runs: re.Pattern[str]) -> str:
    # Prose has runs of two at most (". " became two spaces), which one `replace` settles at twice
    # the regex's speed; longer runs are left to the regex, as `replace` only halves them.
    if char * 2 not in text:
        return text
    if char * 3 in text:
        return runs.sub(char, text)
    return text.replace(char * 2, char)


def may_hold_base64_blob(text: str) -> bool:
    """False when ``text`` has no 24 consecutive base64 characters, so the blob regex finds nothing."""
    return _BASE64_RUN in _utf8(text).translate(_BASE64_TABLE)


class LiteralIndex:
    """Answers ``literal in text`` exactly, from the text's distinct words once that is cheaper.

    A literal without spaces occurs in the text iff it occurs in one of its words, and prose
    repeats its words, so the distinct words are a much shorter haystack. A literal with spaces
    needs its first part ending a word, its last part starting one and any middle part being
    one; only when all hold is the whole text searched. Literals found early in the text cost
    little, so the words are only collected after a few literals have been searched for in vain.
    """

    __slots__ = ("_joined", "_misses", "_text", "_words")

    # Below this, splitting the text costs more than scanning it once per literal.
    MIN_CHARS: Final = 16_384
    MISSES_BEFORE_SPLIT: Final = 3

    def __init__(self, text: str) -> None:
        self._text = text
        self._words: frozenset[str] = frozenset()
        self._joined = ""  # the distinct words, once collected and worth it
        self._misses = 0 if len(text) >= self.MIN_CHARS else -1  # -1: never collect them

    def __contains__(self, literal: object) -> bool:
        if not isinstance(literal, str):
            return False
        if not self._joined:
            found = literal in self._text
            if not found and self._misses >= 0:
                self._misses += 1
                if self._misses >= self.MISSES_BEFORE_SPLIT:
                    self._collect_words()
            return found
        if " " not in literal:
            return literal in self._joined
        first, *middle, last = literal.split(" ")
        if first + " " not in self._joined or " " + last not in self._joined:
            return False
        if any(part not in self._words for part in middle):
            return False
        return literal in self._text

    def _collect_words(self) -> None:
        self._misses = -1
        words = frozenset(self._text.split(" "))
        joined = " " + " ".join(words) + " "
        if len(joined) < len(self._text) // 2:  # else mostly distinct words: keep scanning the text
            self._words, self._joined = words, joined
