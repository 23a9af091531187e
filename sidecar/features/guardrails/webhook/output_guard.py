"""Webhook guardrails on the answer: whole completions once, streams at a bounded cadence.

Every text the exchange walker yields is read (adapters.py): for every choice `content` (string or
parts), `refusal`, the reasoning fields, `audio.transcript`, each tool call's arguments (or a custom
tool's input) and the `function_call`'s; annotations and unknown members whole, in their chunk.
The exchange's webhook guardrails are called concurrently with the same texts (after the built-in
output guardrails, on what they let through) and act in policy order: a closed failure or a block
raises; masks are joined, a span overlapping an earlier guardrail's is dropped. Arguments, and the
content when the request asked for a JSON answer, are masked so they stay valid JSON
(`masking.json_safe`).

Streams: each field stream (walker key: choice index, field, tool call index) has one held
window, shared by the exchange's webhook guardrails. Each time `stream_chars` new characters are
held (the smallest of the guardrails'), the held text goes to every detector (one call each,
concurrently, `partial: true`); what they passed is released except the last `hold_back`
characters (the largest), sent again with the next window so a value split at a window edge is
still seen whole; the cut moves before any masked span it would split, and never splits a bare
JSON number or literal (`bare_token_cut`: a span found later in it could not mask it). At the choice's
`finish_reason`, the usage chunk or the end, the rest goes in one final call. So a stream of N
characters costs about N / stream_chars calls per guardrail and its text lags by at most
stream_chars + hold_back characters plus one call, never per chunk. Logprobs entries (`content`,
`refusal`) are held with their text as the built-in windows hold them (stream_fields.py): an
entry leaves once all of its token's text has, and is dropped when its token overlaps a mask.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.callout.handoff import Decision
from sidecar.core.guardrail_webhook import OnError, WebhookConfig
from sidecar.core.types import JSONDict
from sidecar.core.walk import Field, chunk_texts, set_at
from sidecar.core.walk import Text as WalkText
from sidecar.features.guardrails.masking import (
    JsonState,
    MaskNumbering,
    Replacement,
    bare_token_cut,
    json_safe,
    replace_spans,
)
from sidecar.features.guardrails.output_check import (
    carries_nothing,
    choice_index,
    drop_masked_logprobs,
    put_logprobs,
    put_text,
    take_logprobs,
)
from sidecar.features.guardrails.stream_fields import LOGPROB_FIELDS, overlaps_any
from sidecar.features.guardrails.webhook.adapters import Sent, completion_texts, stream_path
from sidecar.features.guardrails.webhook.adapters import sent as wire_text
from sidecar.features.guardrails.webhook.client import CallResult, WebhookClient
from sidecar.features.guardrails.webhook.verdict import Verdict, judge, replacements, unavailable
from sidecar.features.guardrails.webhook.wire import CallContext, Direction, Finding, Text
from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.policy.guardrails import Action, Guardrail

log = logging.getLogger("sidecar.guardrails")
# A span that keeps touching the end of a growing window is released (masked) past this many characters.
MAX_HELD = 16384
StreamKey = tuple[int, Field, int]


@dataclass
class _Window:
    """The held text of one field stream: `held` starts at stream offset `base`."""

    held: str = ""
    base: int = 0
    fresh: int = 0  # characters added since the last call
    json_state: JsonState = field(default_factory=JsonState)  # where `held` starts, for a JSON field
    entries: deque[tuple[int, int, Any]] = field(default_factory=deque)  # logprobs: (start, end, entry)
    entry_end: int = 0
    masked: list[tuple[int, int]] = field(default_factory=list)  # stream offsets of masked values

    def hold(self, entries: list[Any]) -> None:
        for entry in entries:
            token = entry.get("token") if isinstance(entry, dict) else None
            start = self.entry_end
            self.entry_end += len(token) if isinstance(token, str) else 0
            self.entries.append((start, self.entry_end, entry))

    def released_entries(self, final: bool) -> list[Any]:
        out = []
        while self.entries and (final or self.entries[0][1] <= self.base):
            start, end, entry = self.entries.popleft()
            if not overlaps_any(start, end, self.masked):
                out.append(entry)
        return out


class WebhookOutput:
    """The webhook guardrails of one chat exchange (an `AsyncOutputGuard`, forward/exchange.py)."""

    def __init__(self, client: WebhookClient, guardrails: list[Guardrail], decision: Decision,
                 metrics: GatewayMetrics | None, *, json_answer: bool = False) -> None:
        self._client = client
        self._guardrails = guardrails
        self._decision = decision
        self._metrics = metrics
        self._json_answer = json_answer
        self._numbering = MaskNumbering()
        self._stream_chars = min(_config(g).stream_chars for g in guardrails)
        self._hold_back = max(g.hold_back for g in guardrails)
        self._windows: dict[StreamKey, _Window] = {}
        self._envelope: dict[str, Any] = {}

    # ---- whole completions -----------------------------------------------------------------
    async def check_completion(self, completion: JSONDict) -> None:
        """Checks every text of every choice in one call per guardrail; masks in place; raises
        GuardrailBlocked (400) or GuardrailUnavailable (503, `on_error: closed`)."""
        await self._check_whole(completion, completion_texts(completion))

    async def _check_whole(self, root: JSONDict, found: list[Sent]) -> None:
        """Checks texts read whole (a completion's, or a chunk's whole values) in one call per
        guardrail and masks them in place in `root`; raises as `check_completion`."""
        if not found:
            return
        results = await self._call_all([text for text, _ in found], partial=False)
        by_path = {text.path: text.text for text, _ in found}
        if any(verdict_masks(g, r) for g, r in zip(self._guardrails, results, strict=True)):
            self._numbering.reserve(" ".join(by_path.values()))  # the built-in output masks' placeholders
        chosen: dict[str, list[Replacement]] = {}
        for guardrail, result in zip(self._guardrails, results, strict=True):
            verdict = self._settle(guardrail, result, lambda _: True)
            for path, findings in (verdict.replacements() if verdict else {}).items():
                taken = chosen.setdefault(path, [])
                taken.extend(replacements(by_path[path], findings, self._numbering, taken))
        for text, source in found:
            spans = chosen.get(text.path)
            if not spans:
                continue
            spans = json_safe(source.text, spans) if self._is_json(source.field) else spans
            set_at(root, source.path, replace_spans(source.text, spans))
            if source.field in LOGPROB_FIELDS:
                drop_masked_logprobs(root["choices"][source.path[1]], source.field,
                                     [(start, end) for start, end, _ in spans])

    # ---- streams ------------------------------------------------------------------------------
    async def check_chunks(self, chunks: list[JSONDict]) -> list[JSONDict]:
        """Stamped chunks in (already through the built-in guards); the chunks to send now out."""
        out: list[JSONDict] = []
        for chunk in chunks:
            out.extend(await self._chunk(chunk))
        return out

    async def release(self) -> list[JSONDict]:
        """The stream ended: every held text, checked by a final call, in one chunk per choice."""
        released = []
        for index in sorted({key[0] for key in self._windows}):
            choice: dict[str, Any] = {"index": index, "delta": {}, "finish_reason": None}
            await self._finish_choice(choice, index)
            if not carries_nothing(choice):
                released.append({**self._envelope, "object": "chat.completion.chunk", "choices": [choice]})
        return released

    async def _chunk(self, chunk: JSONDict) -> list[JSONDict]:
        self._envelope = {key: chunk[key] for key in ("id", "created", "model") if key in chunk}
        choices = chunk.get("choices") or []
        if not choices and chunk.get("usage"):
            return [*await self.release(), chunk]  # the usage chunk ends the answer: held text goes first
        fed: set[tuple[int, Field]] = set()
        whole: list[WalkText] = []
        for text in chunk_texts(chunk, whole):
            assert text.key is not None
            choice = chunk["choices"][text.path[1]]
            entries = take_logprobs(choice, text.field) if choice.get("logprobs") else None
            out, released = await self._feed(text.key, text.text, entries)
            set_at(chunk, text.path, out)
            if entries is not None:
                fed.add((text.key[0], text.field))
                put_logprobs(choice, text.field, released)
        if whole:  # annotations, unknown fields: they arrive whole in one chunk, so read whole there
            await self._check_whole(chunk, [(wire_text(text), text) for text in whole])
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice_index(choice, position)
            if choice.get("logprobs"):
                await self._bare_logprobs(choice, index, fed)
            if choice.get("finish_reason") is not None:
                await self._finish_choice(choice, index)
        if choices and not chunk.get("usage") and all(isinstance(c, dict) and carries_nothing(c) for c in choices):
            return []  # everything in it is being held back
        return [chunk]

    async def _bare_logprobs(self, choice: dict[str, Any], index: int, fed: set[tuple[int, Field]]) -> None:
        """Logprobs entries of a chunk without text in their field queue behind that field's text."""
        for logprob_field in LOGPROB_FIELDS:
            entries = take_logprobs(choice, logprob_field) if (index, logprob_field) not in fed else None
            if entries is not None:
                _, released = await self._feed((index, logprob_field, 0), "", entries)
                put_logprobs(choice, logprob_field, released)

    async def _finish_choice(self, choice: dict[str, Any], index: int) -> None:
        for key in sorted((k for k in self._windows if k[0] == index), key=lambda k: (k[1].value, k[2])):
            text, entries = await self._feed(key, "", None, final=True)
            del self._windows[key]
            if text:
                put_text(choice.setdefault("delta", {}), key[1], key[2], text)
            if key[1] in LOGPROB_FIELDS and entries:
                held = (choice.get("logprobs") or {}).get(LOGPROB_FIELDS[key[1]]) or []
                put_logprobs(choice, key[1], [*held, *entries])

    async def _feed(self, key: StreamKey, text: str, entries: list[Any] | None,
                    final: bool = False) -> tuple[str, list[Any]]:
        """`text` into its window; the text and logprobs entries that may leave now."""
        window = self._windows.setdefault(key, _Window())
        window.held += text
        window.fresh += len(text)
        if entries:
            window.hold(entries)
        due = window.fresh >= self._stream_chars or len(window.held) >= MAX_HELD
        out = await self._scan(key, window, final) if window.held and (due or final) else ""
        return out, window.released_entries(final)

    async def _scan(self, key: StreamKey, window: _Window, final: bool) -> str:
        held = window.held
        sent = Text(stream_path(key), held, role="assistant", offset=window.base)
        results = await self._call_all([sent], partial=not final)
        window.fresh = 0
        cut = len(held) if final else max(0, len(held) - self._hold_back)
        spans = [f for g, r in zip(self._guardrails, results, strict=True) if r.ok
                 for f in judge(r.findings, g.action, _config(g).threshold).replacements().get(sent.path, [])]
        json = self._is_json(key[1])
        moved = True
        while moved:  # both only move the cut back
            before = cut
            cut = _cut_before_spans(cut, spans)
            if json and not final:
                cut = bare_token_cut(held, cut, window.json_state)  # a number is masked whole or not at all
            moved = cut != before
        if spans:
            self._numbering.reserve(held)  # the built-in output masks' placeholders in this window
        if cut == 0 and len(held) >= MAX_HELD:
            cut = len(held)
        chosen: list[Replacement] = []
        for guardrail, result in zip(self._guardrails, results, strict=True):
            verdict = self._settle(guardrail, result, lambda f: f.span is None or f.span.start < cut)
            released = [f for f in (verdict.replacements() if verdict else {}).get(sent.path, [])
                        if f.span is not None and f.span.end <= cut]
            chosen.extend(replacements(held, released, self._numbering, chosen))
        raw = held[:cut]
        if chosen and json:
            chosen = json_safe(raw, chosen, window.json_state)
        window.masked.extend((window.base + start, window.base + end) for start, end, _ in chosen)
        if json:
            window.json_state = window.json_state.advance(raw)
        window.held, window.base = held[cut:], window.base + cut
        return replace_spans(raw, chosen) if chosen else raw

    # ---- calling and acting -------------------------------------------------------------------
    async def _call_all(self, texts: list[Text], *, partial: bool) -> list[CallResult]:
        return list(await asyncio.gather(*(self._client.inspect(_config(g), self._context(g, partial=partial), texts)
                                           for g in self._guardrails)))

    def _is_json(self, text_field: Field) -> bool:
        return text_field.is_json or (self._json_answer and text_field is Field.CONTENT)

    def _settle(self, guardrail: Guardrail, result: CallResult, counts: Callable[[Finding], bool]) -> Verdict | None:
        """Raises for a block or a closed failure; counts and logs the findings `counts` selects."""
        if not result.ok:
            if _config(guardrail).on_error is OnError.CLOSED:
                raise unavailable(guardrail.key, result, "answer")
            return None
        verdict = judge(result.findings, guardrail.action, _config(guardrail).threshold)
        if verdict.blocks:
            self._record(guardrail, verdict)
            raise verdict.blocked(guardrail.key, role="assistant")
        counted = Verdict(tuple(f for f in verdict.findings if counts(f)), guardrail.action)
        if counted.findings:
            self._record(guardrail, counted)
        return verdict

    def _record(self, guardrail: Guardrail, verdict: Verdict) -> None:
        categories = sorted({f.category for f in verdict.findings})
        if self._metrics is not None:
            for finding in verdict.findings:
                self._metrics.guardrail_finding(guardrail.key, finding.category, guardrail.action)
        log.info("guardrail finding", extra={"fields": {
            "request_id": self._decision.request_id, "guardrail": guardrail.key, "action": guardrail.action,
            "direction": "output", "type": "webhook", "categories": categories,
            "paths": sorted({f.span.path for f in verdict.findings if f.span is not None})}})

    def _context(self, guardrail: Guardrail, *, partial: bool) -> CallContext:
        decision = self._decision
        return CallContext(request_id=decision.request_id, guardrail=guardrail.key, direction=Direction.OUTPUT,
                           action=guardrail.action, model=decision.model_key, token_name=decision.token_name,
                           team=decision.team, partial=partial)


def verdict_masks(guardrail: Guardrail, result: CallResult) -> bool:
    """Whether a detector's answer has something for a `mask` guardrail to replace."""
    return result.ok and guardrail.action is Action.MASK and any(f.span is not None for f in result.findings)


def _cut_before_spans(cut: int, spans: list[Finding]) -> int:
    """`cut` moved back until it splits no span (it only moves back, so this ends)."""
    moved = True
    while moved:
        moved = False
        for finding in spans:
            assert finding.span is not None
            if finding.span.start < cut < finding.span.end:
                cut, moved = finding.span.start, True
    return cut


def _config(guardrail: Guardrail) -> WebhookConfig:
    assert guardrail.webhook is not None
    return guardrail.webhook
