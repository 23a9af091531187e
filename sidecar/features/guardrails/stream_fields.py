"""One held-back stream per field of a streamed answer, with the logprobs of its text.

A field stream is one `StreamScanner` (all output guardrails of the exchange share it) for one
(choice index, field, tool call index) key of `sidecar.core.walk`. `content` and `refusal`
streams also hold their `logprobs` entries (OpenAI: `choices[].logprobs.content[]` and
`.refusal[]`, one entry per token, whose `token` strings concatenate to the text): an entry
leaves only when all of its token's text has left, so entries arrive in order and never ahead
of their text, and an entry whose token overlaps a masked value is dropped (its `token`,
`bytes` and `top_logprobs` would carry the value).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from sidecar.core.entity import Entity
from sidecar.core.walk import Field
from sidecar.features.guardrails.stream_scan import StreamScanner

LOGPROB_FIELDS = {Field.CONTENT: "content", Field.REFUSAL: "refusal"}


class FieldStream:
    """Text and logprobs of one field of one choice (or one tool call) as they pass."""

    def __init__(self, scanner: StreamScanner, on_findings: Callable[[list[Entity]], None]) -> None:
        """`on_findings` gets each batch of new findings (it may raise GuardrailBlocked)."""
        self.scanner = scanner
        self._on_findings = on_findings
        self._reported = 0
        self._entry_end = 0  # stream offset where the next logprobs entry's token starts
        self._entries: deque[tuple[int, int, Any]] = deque()

    def feed(self, text: str, entries: list[Any] | None = None) -> tuple[str, list[Any]]:
        """The text and logprobs entries that may leave now."""
        if entries:
            self._hold(entries)
        out = self.scanner.feed(text)
        if len(self.scanner.findings) > self._reported:
            self._report()
        return out, self._released() if self._entries else []

    def finish(self) -> tuple[str, list[Any]]:
        """Everything still held (the choice finished or the stream ended)."""
        text = self.scanner.finish()
        self._report()
        released = self._released()
        # Entries past the text's end (a provider whose tokens do not spell the text) go last.
        released.extend(entry for start, end, entry in self._entries if not self._masked(start, end))
        self._entries.clear()
        return text, released

    def _report(self) -> None:
        found = self.scanner.findings
        if len(found) > self._reported:
            new, self._reported = found[self._reported:], len(found)
            self._on_findings(new)

    def _hold(self, entries: list[Any] | None) -> None:
        for entry in entries or ():
            token = entry.get("token") if isinstance(entry, dict) else None
            start = self._entry_end
            self._entry_end += len(token) if isinstance(token, str) else 0
            self._entries.append((start, self._entry_end, entry))

    def _released(self) -> list[Any]:
        out: list[Any] = []
        released = self.scanner.released
        while self._entries and self._entries[0][1] <= released:
            start, end, entry = self._entries.popleft()
            if not self._masked(start, end):
                out.append(entry)
        return out

    def _masked(self, start: int, end: int) -> bool:
        return overlaps_any(start, end, self.scanner.masked_spans)


def overlaps_any(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Whether the token at [start, end) touches a masked span (an empty token counts as one character)."""
    return any(low < max(end, start + 1) and start < high for low, high in spans)
