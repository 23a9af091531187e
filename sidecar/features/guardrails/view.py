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
3. Look-alikes: in a whitespace-delimited token that also holds an ASCII letter, the Cyrillic,
   Greek and Armenian letters drawn like Latin ones (Unicode's confusables: `а` U+0430 reads
   `a`, `О` U+041E reads `O`) read as those, so `jаne@exаmple.com` and `ignоre previоus`
   spelled with a few look-alikes are found (mixed-script tokens, as Unicode TS #39 flags them).
   A token written in one of those scripts alone is left as it is: Russian or Greek prose, and
   the policy's own keywords in those scripts, read as written.

`View.raw_span(start, end)` gives the original characters behind a view span, so a mask
replaces exactly what the client wrote (removed characters inside the span go with it).
Pure ASCII text without a backslash is its own view: no copy, no map (the common case). The
cost of the rest grows with the number of distinct non-ASCII characters and of characters
removed or expanded, not with the text's length beyond C-speed scans (one-for-one replacements,
such as full-width forms, need no map entry).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
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
# Letters drawn like ASCII ones (Unicode confusables.txt, single letters whose prototype is one
# ASCII letter): Cyrillic, Greek, Armenian and a few Latin variants NFKC keeps. One-for-one, so
# they cost no offset map entry.
_CONFUSABLES: Final = {
    **dict(zip("аеіјорсѕухһԁԛԝӏ", "aeijopcsyxhdqwl", strict=True)),  # Cyrillic small
    **dict(zip("АВЕЅІЈКМНОРСТХУҮԚԜҺ", "ABESIJKMHOPCTXYYQWH", strict=True)),  # Cyrillic capital
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),  # Greek capital
    **dict(zip("αικνορυ", "aikvopu", strict=True)),  # Greek small
    **dict(zip("օսհ", "ouh", strict=True)),  # Armenian small
    **dict(zip("ıɑɡ", "iag", strict=True)),  # Latin dotless i, alpha, script g
}
# A non-ASCII character that the view changes even when its run is NFKC-normalised already
# (searched in non-ASCII text only, so `\d` there is a non-ASCII decimal digit).
_SPECIAL_RE: Final = re.compile(f"[{_IGNORABLE}\\d]")
_LOOK_ALIKES: Final = str.maketrans(_CONFUSABLES)
# A whitespace-delimited token holding a look-alike letter; it is folded only if it also holds an ASCII letter.
_TOKEN_WITH_LOOK_ALIKE: Final = re.compile(f"\\S*[{''.join(_CONFUSABLES)}]\\S*")
_ASCII_LETTER: Final = re.compile("[A-Za-z]")
_NON_ASCII_RUN: Final = re.compile(r"[^\x00-\x7f]+")
_ESCAPE: Final = re.compile(r'\\(?:u([0-9a-fA-F]{4})(?:\\u([0-9a-fA-F]{4}))?|(["\\/bfnrt]))')
_SIMPLE_ESCAPES: Final = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_AT_SIGNS: Final = {"\ufe6b": "@", "\uff20": "@"}
_BLOCK: Final = 4096


class PieceMap:
    """Offsets of a rewritten text back to the text it was made from.

    Only the pieces whose length changed are stored (a removed character, an expansion, a JSON
    escape); between them the two texts correspond character for character, so a text with
    one-for-one replacements only (full-width forms, other digits) needs no entry at all.
    """

    __slots__ = ("_raw_lengths", "_raw_starts", "_view_lengths", "_view_starts")

    def __init__(self) -> None:
        self._view_starts: list[int] = []
        self._view_lengths: list[int] = []
        self._raw_starts: list[int] = []
        self._raw_lengths: list[int] = []

    def add(self, view_start: int, view_length: int, raw_start: int, raw_length: int) -> None:
        """Record a piece; pieces are added in order."""
        self._view_starts.append(view_start)
        self._view_lengths.append(view_length)
        self._raw_starts.append(raw_start)
        self._raw_lengths.append(raw_length)

    def char_span(self, position: int) -> tuple[int, int]:
        """The source characters behind the character at `position`."""
        index = bisect_right(self._view_starts, position) - 1
        if index < 0:
            return position, position + 1
        view_end = self._view_starts[index] + self._view_lengths[index]
        raw_end = self._raw_starts[index] + self._raw_lengths[index]
        if position < view_end:
            return self._raw_starts[index], raw_end
        raw = raw_end + position - view_end
        return raw, raw + 1

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The source span behind `[start, end)` (end > start)."""
        return self.char_span(start)[0], self.char_span(end - 1)[1]


class View(NamedTuple):
    """`text` is what detectors read; `maps` lead its offsets back to `raw` (last map first)."""

    raw: str
    text: str
    maps: tuple[PieceMap, ...] = ()

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        """The raw characters behind `text[start:end]` (end > start)."""
        for piece_map in reversed(self.maps):
            start, end = piece_map.span(start, end)
        return start, end


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


def _decode_json(raw: str) -> tuple[str, PieceMap]:
    pieces: list[str] = []
    piece_map = PieceMap()
    cursor = shift = 0
    for match in _ESCAPE.finditer(raw):
        pieces.append(raw[cursor:match.start()])
        high, low, simple = match.group(1), match.group(2), match.group(3)
        if simple is not None:
            decoded = [(_SIMPLE_ESCAPES[simple], match.end() - match.start())]
        else:
            first, second = int(high, 16), int(low, 16) if low else None
            if second is not None and 0xD800 <= first < 0xDC00 and 0xDC00 <= second < 0xE000:
                decoded = [(chr(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)), 12)]
            else:  # not a surrogate pair: each escape on its own (a lone surrogate reads U+FFFD)
                decoded = [(chr(v) if not 0xD800 <= v < 0xE000 else "\ufffd", 6)
                           for v in (first, second) if v is not None]
        raw_start = match.start()
        for char, length in decoded:
            piece_map.add(raw_start + shift, 1, raw_start, length)
            pieces.append(char)
            shift += 1 - length
            raw_start += length
        cursor = match.end()
    pieces.append(raw[cursor:])
    return "".join(pieces), piece_map


def _normalise(text: str) -> tuple[str, PieceMap] | None:
    """None when the view would be `text` itself (most non-ASCII prose: CJK, accents)."""
    # Blocks: slicing and `isascii` run at C speed, so a long text with a few non-ASCII
    # characters pays the regex scans below only on the blocks that have them.
    blocks = [text[at:at + _BLOCK] for at in range(0, len(text), _BLOCK)]
    dirty = [number for number, block in enumerate(blocks) if not block.isascii()]
    non_ascii = "".join(run for number in dirty for run in _NON_ASCII_RUN.findall(blocks[number]))
    if unicodedata.is_normalized("NFKC", non_ascii) and not _SPECIAL_RE.search(non_ascii):
        return None
    table: dict[int, str] = {}
    for char in set(non_ascii):  # few distinct characters, however long the text
        seen = _char_view(char)
        if seen != char:
            table[ord(char)] = seen
    if not table:
        return None
    piece_map = PieceMap()
    resized = "".join(chr(code) for code, seen in table.items() if len(seen) != 1)
    resized_re = re.compile(f"[{re.escape(resized)}]") if resized else None
    shift = 0
    for number in dirty:
        block = blocks[number]
        if resized_re is not None:
            for match in resized_re.finditer(block):
                seen = table[ord(match.group())]
                piece_map.add(number * _BLOCK + match.start() + shift, len(seen), number * _BLOCK + match.start(), 1)
                shift += len(seen) - 1
        blocks[number] = _NON_ASCII_RUN.sub(lambda run: run.group().translate(table), block)
    return "".join(blocks), piece_map


def _fold_look_alikes(text: str) -> str:
    """`text` with the look-alike letters of its mixed-script tokens read as Latin (layer 3 of the
    module docstring); one for one, so offsets do not move and no map is needed."""
    def fold(token: re.Match[str]) -> str:
        word = token.group()
        return word.translate(_LOOK_ALIKES) if _ASCII_LETTER.search(word) else word
    return _TOKEN_WITH_LOOK_ALIKE.sub(fold, text)


def view_of(raw: str, *, json: bool = False) -> View:
    """The normalised view of `raw` (JSON escapes decoded first when `json`)."""
    escaped = json and "\\" in raw
    if raw.isascii() and not escaped:
        return View(raw, raw)
    text = raw
    maps: tuple[PieceMap, ...] = ()
    if escaped:
        text, json_map = _decode_json(raw)
        maps = (json_map,)
    if not text.isascii():
        normalised = _normalise(text)
        if normalised is not None:
            text, unicode_map = normalised
            maps = (*maps, unicode_map)
        text = _fold_look_alikes(text)
    return View(raw, text, maps) if text != raw else View(raw, raw)
