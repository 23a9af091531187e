"""Incremental PII/secret scanning for model output streams.

The scanner keeps a small un-emitted tail (``hold_back`` characters, moved
further back when a candidate might still be growing: a token run reaching the
end, an open PEM block, a deny pattern's match begun but not complete, see
``open_at``) and only rescans that tail plus the new delta, so work per ``feed``
is bounded by the window size, not by the length of the whole response.

Detection reads the normalised view of the window (view.py: Unicode, and JSON escapes when
`json`), and masks replace the raw characters behind each finding. With `json` the window is
a piece of a JSON document (tool-call arguments, a JSON answer): masks keep it valid JSON.
`released` and `masked_spans` (raw stream offsets) let the caller release per-token data, such
as logprobs, in step with the text and drop what belonged to a masked value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Final

from sidecar.core.entity import Entity, resolve_overlaps

from .masking import JsonState, MaskNumbering, Replacement, json_safe, replace_spans
from .pii import find_entities
from .view import _CONFUSABLES, _IGNORABLE, View, view_of

# The longest entity that contains spaces (a 34-char IBAN printed in groups
# of four, 42 chars) must fit in the held window, so smaller values are
# raised to this floor.
MIN_HOLD_BACK: Final = 48
# Already-emitted characters kept as read-only context, so cue words such as
# "SSN" or "电话" before a number still count after they were emitted.
_CONTEXT_CHARS: Final = 32
# Cap for holding an unbroken token (JWT, PEM body...) that is still growing;
# past it we emit anyway to keep memory and per-feed work bounded.
MAX_HOLD: Final = 16384
# Characters that can continue a token-like entity (key, JWT, e-mail, IP).
# Everything else - whitespace, punctuation, CJK - ends the token, so CJK
# prose without spaces still streams out promptly. The characters the
# normalised view folds into these (JSON's backslash escapes, full-width
# forms, the small @, other scripts' digits, invisible characters) continue
# a token too, so an obfuscated value is held back whole like a plain one.
_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=_.@:%-\\\ufe6b"
)
# The same as a regex, with the full-width forms (U+FF01-U+FF5E), every Unicode digit, the
# invisible characters and the letters drawn like Latin ones; `\d` here is any Unicode decimal digit.
_NOT_TOKEN_CHAR: Final = re.compile(
    f"[^A-Za-z0-9+/=_.@:%\\\\\\-\ufe6b\uff01-\uff5e\\d{_IGNORABLE}{''.join(_CONFUSABLES)}]")


class StreamScanner:
    """Feed output deltas, emit only text that can no longer become PII."""

    def __init__(
        self,
        categories: frozenset[str],
        hold_back: int = 64,
        *,
        mask: bool = False,
        numbering: MaskNumbering | None = None,
        finder: Callable[[str], list[Entity]] | None = None,
        json: bool = False,
        masks: Callable[[Entity], bool] | None = None,
        open_at: Callable[[str], int] | None = None,
    ) -> None:
        if finder is None:
            find_entities("", categories)  # validates category names up front
        # Another detector (a pattern guardrail's matcher) can reuse the same windowing.
        # The windows overlap: a memo (this stream's own) validates each digit run once.
        self._find = finder if finder is not None else partial(find_entities, categories=categories, memo={})
        self.categories = categories
        self.hold_back = max(hold_back, MIN_HOLD_BACK)
        self.mask = mask
        # Which findings are masked (the others are only reported); every one when `mask`.
        self._masks = masks if masks is not None else (lambda _: mask)
        self.json = json
        # Where in a window's normalised text a value may have begun that more text could complete
        # (a multi-word deny pattern longer than the window): text from there on is held back.
        self._open_at = open_at
        self._json_state = JsonState()  # the lexer state where the pending text starts
        # Raw stream offsets of the masked values, for the caller's per-token bookkeeping.
        self.masked_spans: list[tuple[int, int]] = []
        self.numbering = numbering if numbering is not None else MaskNumbering()
        # Entities in absolute (raw stream) coordinates, in stream order.
        self.findings: list[Entity] = []
        self._pending = ""
        self._context = ""
        self._base = 0  # absolute offset of self._pending[0]
        # Absolute start of the token run touching the end of the stream;
        # updated from each delta only, so tracking it is O(len(delta)).
        self._run_start = 0

    def feed(self, delta: str) -> str:
        """Add a delta; return the text that is now safe to pass downstream."""
        self._track_token_run(delta)
        self._pending += delta
        cut = self._growth_cut(len(self._pending) - self.hold_back)
        if cut <= 0:
            return ""  # nothing can be released yet: skip scanning entirely
        return self._emit(cut, hold_open=self._open_at is not None)

    @property
    def released(self) -> int:
        """How many raw characters of the stream have been released so far."""
        return self._base

    def finish(self) -> str:
        """End of stream: scan and return everything still held."""
        return self._emit(len(self._pending))

    def _track_token_run(self, delta: str) -> None:
        end = self._base + len(self._pending) + len(delta)
        if delta and delta[-1] not in _TOKEN_CHARS and _NOT_TOKEN_CHAR.match(delta, len(delta) - 1):
            self._run_start = end  # the common case: a delta ending in a space or punctuation
            return
        last = None
        for match in _NOT_TOKEN_CHAR.finditer(delta):
            last = match
        if last is not None:
            self._run_start = end - len(delta) + last.start() + 1
        # Otherwise the whole delta continues the current run: nothing to update.

    def _growth_cut(self, cut: int) -> int:
        """Move ``cut`` before a token that reaches the end and may still grow."""
        pending = self._pending
        if cut <= 0:
            return 0
        run_start = self._run_start - self._base
        if run_start < cut and len(pending) - run_start <= MAX_HOLD:
            cut = max(run_start, 0)
        begin = pending.rfind("-----BEGIN")
        # An open PEM block spans lines, so the whitespace rule cannot see it.
        open_pem = 0 <= begin < cut and pending.find("-----END", begin) == -1
        if open_pem and len(pending) - begin <= MAX_HOLD:
            cut = begin
        return cut

    def _before_open_match(self, view: View, offset: int, cut: int) -> int:
        """`cut`, moved back to where a value may have begun that more text could complete.

        Not when it began in text already released (beyond repair; it can only be that old after
        `MAX_HOLD`) or longer ago than `MAX_HOLD` characters: past that the text goes on, as an
        unbroken token run does, to keep memory and work per feed bounded."""
        assert self._open_at is not None
        start = self._open_at(view.text)
        if start >= len(view.text):
            return cut
        held = view.raw_span(start, start + 1)[0] - offset
        if held < 0 or len(self._pending) - held > MAX_HOLD:
            return cut
        return min(cut, held)

    def _emit(self, cut: int, *, hold_open: bool = False) -> str:
        offset = len(self._context)
        window = self._context + self._pending
        view = view_of(window, json=self.json)
        if hold_open:
            cut = self._before_open_match(view, offset, cut)
            if cut <= 0:
                return ""
        # Entities starting inside the already-emitted context were either
        # reported before or are beyond repair; ignoring them also keeps a
        # late-validating token from pinning ``cut`` at 0 forever.
        entities = self._find(view.text)
        if not entities:  # the common case: nothing to place, report or mask
            return self._release(cut, [])
        found: list[tuple[Entity, str]] = []
        for entity in entities:
            start, end = view.raw_span(entity.start, entity.end)
            if start >= offset:
                found.append((Entity(entity.category, start - offset, end - offset, entity.source),
                              view.text[entity.start:entity.end]))
        for entity, _ in reversed(found):
            # Never split an entity: release up to its start instead.
            if entity.start < cut < entity.end:
                cut = entity.start
        released = [(e, value) for e, value in found if e.end <= cut]
        self.findings.extend(e.shifted(self._base) for e, _ in released)
        values = {(e.start, e.end): value for e, value in released}
        # Several guardrails may report the same value: each masked value is replaced once.
        spans: list[Replacement] = [(e.start, e.end, self.numbering.placeholder(e.category, values[e.start, e.end]))
                                    for e in resolve_overlaps(e for e, _ in released if self._masks(e))]
        return self._release(cut, spans)

    def _release(self, cut: int, spans: list[Replacement]) -> str:
        """Pass `pending[:cut]` on, with `spans` (pending coordinates) masked."""
        raw = out = self._pending[:cut]
        if spans:  # rare: most releases mask nothing
            if self.json:
                spans = json_safe(raw, spans, self._json_state)
            self.masked_spans.extend((start + self._base, end + self._base) for start, end, _ in spans)
            out = replace_spans(raw, spans)
        if self.json:
            self._json_state = self._json_state.advance(raw)
        self._context = (self._context + raw)[-_CONTEXT_CHARS:]
        self._pending = self._pending[cut:]
        self._base += cut
        return out
