"""Incremental PII/secret scanning for model output streams.

The scanner keeps a small un-emitted tail (``hold_back`` characters, moved
further back when a candidate might still be growing) and only rescans that
tail plus the new delta, so work per ``feed`` is bounded by the window size,
not by the length of the whole response.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Final

from .entity import Entity
from .masking import MaskNumbering, mask_text
from .pii import find_entities

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
# prose without spaces still streams out promptly.
_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=_.@:%-"
)


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
    ) -> None:
        if finder is None:
            find_entities("", categories)  # validates category names up front
        # Another detector (a pattern guardrail's matcher) can reuse the same windowing.
        self._find = finder if finder is not None else partial(find_entities, categories=categories)
        self.categories = categories
        self.hold_back = max(hold_back, MIN_HOLD_BACK)
        self.mask = mask
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
        return self._emit(cut)

    def finish(self) -> str:
        """End of stream: scan and return everything still held."""
        return self._emit(len(self._pending))

    def _track_token_run(self, delta: str) -> None:
        end = self._base + len(self._pending) + len(delta)
        for index in range(len(delta) - 1, -1, -1):
            if delta[index] not in _TOKEN_CHARS:
                self._run_start = end - len(delta) + index + 1
                return
        # The whole delta continues the current run: nothing to update.

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

    def _emit(self, cut: int) -> str:
        offset = len(self._context)
        window = self._context + self._pending
        # Entities starting inside the already-emitted context were either
        # reported before or are beyond repair; ignoring them also keeps a
        # late-validating token from pinning ``cut`` at 0 forever.
        entities = [e for e in self._find(window) if e.start >= offset]
        for entity in reversed(entities):
            # Never split an entity: release up to its start instead.
            if entity.start < offset + cut < entity.end:
                cut = entity.start - offset
        released = [e.shifted(-offset) for e in entities if e.end <= offset + cut]
        self.findings.extend(e.shifted(self._base) for e in released)
        raw = self._pending[:cut]
        out = mask_text(raw, released, self.numbering) if self.mask else raw
        self._context = (self._context + raw)[-_CONTEXT_CHARS:]
        self._pending = self._pending[cut:]
        self._base += cut
        return out
