"""A pattern guardrail's compiled lists: ``compile_patterns`` -> ``PatternMatcher``.

The `guardrails:` schema compiles them once per policy snapshot (a `Guardrail`'s `matcher`);
the guardrails feature's detectors call `find` and `open_at`. In policy/, not core/: the partial
matches need the third-party `regex` module.

Semantics (documented for the policy loader):

* deny regexes are used exactly as written (add ``(?i)`` for case-folding);
* deny keywords are literal but for whitespace (a space in a keyword matches any run of
  whitespace, newlines included), case-insensitive and whole-word: a keyword edge
  that is an ASCII/Latin word character must not touch another word
  character; edges in scripts written without spaces (CJK, kana, hangul)
  match anywhere, since those scripts have no word boundaries to respect;
* a deny match is exempt when some allow-regex match *contains* it, so an
  allow regex can name either the exact value or a wider context;
* invalid regexes raise ``re.error`` unchanged for the loader to report;
* streams: `PatternMatcher.open_at` says where a deny match may have begun that more text could
  complete (a partial match, from the `regex` module: the stdlib's `re` has none), so an output
  stream holds such text back however long the value is, not only `hold_back` characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import regex

from sidecar.core.entity import PATTERN, Entity, resolve_overlaps

_SPACELESS_RANGES: Final = "\u0e00-\u0eff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
# A word character of a script that separates words with spaces; CJK glued
# to a Latin keyword ("绝密secret文件") must not block the match.
_SPACED_WORD_CHAR: Final = f"[^\\W{_SPACELESS_RANGES}]"


def _spaceless_script(char: str) -> bool:
    code = ord(char)
    return (
        0x2E80 <= code <= 0x9FFF  # CJK radicals, kana, CJK ideographs
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF00 <= code <= 0xFFEF  # half/full-width forms
        or 0x0E00 <= code <= 0x0EFF  # Thai, Lao
    )


def _needs_boundary(char: str) -> bool:
    return (char.isalnum() or char == "_") and not _spaceless_script(char)


def keyword_regex(keyword: str) -> str:
    """Regex source for one literal keyword with the boundary rules above; a space in it stands
    for any run of whitespace (`project falcon` also matches `Project\nFalcon` and two spaces: a
    model reflowing text, or a writer adding a space, must not get past a keyword)."""
    keyword = keyword.strip()
    body = r"\s+".join(re.escape(word) for word in keyword.split())
    if keyword and _needs_boundary(keyword[0]):
        body = f"(?<!{_SPACED_WORD_CHAR})" + body
    if keyword and _needs_boundary(keyword[-1]):
        body = body + f"(?!{_SPACED_WORD_CHAR})"
    return body


@dataclass(frozen=True, slots=True)
class PatternMatcher:
    """A pattern guardrail's compiled lists: `deny` and `allow` (stdlib `re`) find the values;
    `partial` holds the deny patterns again, compiled by the `regex` module, for `open_at` only."""

    deny: tuple[re.Pattern[str], ...]
    allow: tuple[re.Pattern[str], ...]
    partial: tuple[regex.Pattern[str], ...] = ()

    def open_at(self, text: str) -> int:
        """The earliest offset of `text` where a deny match may have begun that text after `text`
        could complete (a partial match reaching its end); `len(text)` when there is none.

        A match already complete is not open (`find` reports it; a stream holds a match that
        touches the end of its window by itself). Case: keyword `project falcon` and a text ending in
        `... project fal` -> the offset of `project`."""
        start = len(text)
        for pattern in self.partial:
            for match in pattern.finditer(text, partial=True):
                # Only the last match of a finditer can be partial; an empty one at the very end
                # holds nothing back.
                if match.partial and match.start() < start:
                    start = match.start()
        return start

    def find(self, text: str) -> list[Entity]:
        """Non-overlapping ``pattern`` entities, sorted by start."""
        if not self.deny:
            return []
        allowed = [m.span() for rx in self.allow for m in rx.finditer(text) if m.end() > m.start()]
        hits = (
            Entity(PATTERN, m.start(), m.end())
            for rx in self.deny
            for m in rx.finditer(text)
            if m.end() > m.start()  # empty matches would mask nothing
        )
        kept = (h for h in hits if not any(a <= h.start and h.end <= b for a, b in allowed))
        return resolve_overlaps(kept)


def compile_patterns(
    deny_regexes: Iterable[str],
    deny_keywords: Iterable[str],
    allow_regexes: Iterable[str],
    *,
    partial: bool = True,
) -> PatternMatcher:
    """Compile policy patterns once; ``re.error`` propagates unchanged. `partial`: also for
    `open_at` (output streams only read it; an input-only guardrail skips the second compile)."""
    deny = [re.compile(source) for source in deny_regexes]
    keywords = sorted({k for k in deny_keywords if k.strip()}, key=len, reverse=True)
    if keywords:
        # One alternation for all keywords (longest first) keeps find() to a
        # single pass no matter how many keywords a policy lists.
        deny.append(re.compile("|".join(keyword_regex(k) for k in keywords), re.IGNORECASE))
    allow = tuple(re.compile(source) for source in allow_regexes)
    return PatternMatcher(tuple(deny), allow, tuple(_partial(pattern) for pattern in deny) if partial else ())


def _partial(pattern: re.Pattern[str]) -> regex.Pattern[str]:
    """`pattern` for `regex` (VERSION0: `re`'s syntax and meaning), with the same flags; a source
    `regex` reads differently or not at all gets a pattern that never matches partially, so the
    stream falls back to the `hold_back` window for it."""
    flags = regex.IGNORECASE if pattern.flags & re.IGNORECASE else 0
    try:
        return regex.compile(pattern.pattern, flags | regex.VERSION0)
    except (regex.error, ValueError):  # ValueError: flags `regex` finds incompatible
        return _NEVER


_NEVER: Final = regex.compile(r"(?!)")
