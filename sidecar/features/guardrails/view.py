"""What detectors read: a normalised view of a text, with offsets mapped back to the original.

`view_of(raw, json=...)` builds it in two layers:

1. JSON (`json=True`, for tool-call arguments and JSON answers): escape sequences are decoded
   (`\\u0040` reads `@`, `\\"` reads `"`, surrogate pairs read as one character), so a detector
   sees the strings an SDK will see after `json.loads`.
2. Unicode: NFKC (full-width and compatibility forms read as their plain form); default-ignorable
   and format characters removed (U+200B-U+200F, U+202A-U+202E, U+2060-U+206F, U+00AD, U+FEFF,
   U+034F, variation selectors, tags, the Hangul fillers, every category-Cf character); every
   Unicode decimal digit read as its ASCII digit (`٤` and `４` read `4`); the small and
   full-width commercial at (U+FE6B, U+FF20) read `@` (NFKC already does this).

`View.raw_span(start, end)` gives the original characters behind a view span, so a mask
replaces exactly what the client wrote (removed characters inside the span go with it).
Pure ASCII text without a backslash is its own view: no copy, no map (the common case).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, NamedTuple

# Default-ignorable code points (Unicode DerivedCoreProperties) and every category-Cf character
# (Unicode 15.1); tests/unit/features/guardrails/test_view.py checks this against unicodedata.
_IGNORABLE: Final = (
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff"
)
_IGNORABLE_RE: Final = re.compile(f"[{_IGNORABLE}]")
# A non-ASCII character that the view changes even when its run is NFKC-normalised already.
_SPECIAL_RE: Final = re.compile(f"[{_IGNORABLE}]|[^\\x00-\\x7f](?<=\\d)")
_NON_ASCII_RUN: Final = re.compile(r"[^\x00-\x7f]+")
_ESCAPE: Final = re.compile(r'\\(?:u([0-9a-fA-F]{4})(?:\\u([0-9a-fA-F]{4}))?|(["\\/bfnrt]))')
_SIMPLE_ESCAPES: Final = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_AT_SIGNS: Final = {"\ufe6b": "@", "\uff20": "@"}


class View(NamedTuple):
    """`text` is what detectors read; `starts[i]`/`ends[i]` are the raw span behind `text[i]`."""

    raw: str
    text: str
    starts: tuple[int, ...] | None = None  # None: the view is the raw text itself
    ends: tuple[int, ...] | None = None

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        """The raw characters behind `text[start:end]` (end > start)."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def _char_view(char: str) -> str:
    if _IGNORABLE_RE.match(char):
        return ""
    if char in _AT_SIGNS:
        return "@"
    if char.isdecimal():
        return str(unicodedata.decimal(char))
    folded = unicodedata.normalize("NFKC", char)
    # NFKC may produce decimal digits of other scripts or ignorable characters in turn.
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in folded
                   if not _IGNORABLE_RE.match(c))


class _Builder:
    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []

    def same(self, raw: str, low: int, high: int, starts: list[int] | None = None,
             ends: list[int] | None = None) -> None:
        """Copy raw[low:high] unchanged (its map from the lower layer, if any)."""
        self.pieces.append(raw[low:high])
        self.starts.extend(range(low, high) if starts is None else starts[low:high])
        self.ends.extend(range(low + 1, high + 1) if ends is None else ends[low:high])

    def put(self, text: str, start: int, end: int) -> None:
        self.pieces.append(text)
        self.starts.extend([start] * len(text))
        self.ends.extend([end] * len(text))


def _decode_json(raw: str) -> tuple[str, list[int], list[int]]:
    out = _Builder()
    cursor = 0
    for match in _ESCAPE.finditer(raw):
        out.same(raw, cursor, match.start())
        high, low, simple = match.group(1), match.group(2), match.group(3)
        if simple is not None:
            out.put(_SIMPLE_ESCAPES[simple], match.start(), match.end())
        else:
            first, second = int(high, 16), int(low, 16) if low else None
            if second is not None and 0xD800 <= first < 0xDC00 and 0xDC00 <= second < 0xE000:
                out.put(chr(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)), match.start(), match.end())
            else:
                # Not a pair: decode the first escape alone and read the second on its own next time.
                end = match.start() + 6
                out.put(chr(first) if not 0xD800 <= first < 0xE000 else "\ufffd", match.start(), end)
                if second is not None:
                    out.put(chr(second) if not 0xD800 <= second < 0xE000 else "\ufffd", end, match.end())
        cursor = match.end()
    out.same(raw, cursor, len(raw))
    return "".join(out.pieces), out.starts, out.ends


def _normalise(text: str, starts: list[int] | None,
               ends: list[int] | None) -> tuple[str, list[int], list[int]] | None:
    """None when the view would be `text` itself (most non-ASCII prose: CJK, accents)."""
    out = _Builder()
    cursor = 0
    for match in _NON_ASCII_RUN.finditer(text):
        run = match.group()
        if unicodedata.is_normalized("NFKC", run) and not _SPECIAL_RE.search(run):
            continue  # unchanged: copied with the ASCII around it
        out.same(text, cursor, match.start(), starts, ends)
        for position in range(match.start(), match.end()):
            raw_start = position if starts is None else starts[position]
            raw_end = position + 1 if ends is None else ends[position]
            out.put(_char_view(text[position]), raw_start, raw_end)
        cursor = match.end()
    if cursor == 0 and starts is None:
        return None
    out.same(text, cursor, len(text), starts, ends)
    return "".join(out.pieces), out.starts, out.ends


def view_of(raw: str, *, json: bool = False) -> View:
    """The normalised view of `raw` (JSON escapes decoded first when `json`)."""
    escaped = json and "\\" in raw
    if raw.isascii() and not escaped:
        return View(raw, raw)
    text, starts, ends = raw, None, None
    if escaped:
        text, starts, ends = _decode_json(raw)
    if not text.isascii():
        normalised = _normalise(text, starts, ends)
        if normalised is not None:
            text, starts, ends = normalised
    if starts is None or ends is None or text == raw:
        return View(raw, raw)
    return View(raw, text, tuple(starts), tuple(ends))
