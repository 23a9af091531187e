"""Webhook guardrails on the answer: whole completions once, streams at a bounded cadence.

A stream's text is held back per choice and guardrail. Each time `stream_chars` new characters
are held (default 512), the held text goes to the detector in one call (`partial: true`); what
the detector passed is released except the last `hold_back` characters (default 64), which are
sent again with the next window so a value split at a window edge is still seen whole. A span
that reaches into the kept tail moves the cut (past it when it ends inside the window, before it
when it touches the end and may still grow). At `finish_reason`, the usage chunk or the end,
the rest goes in one final call. So a stream of N characters costs about N / stream_chars calls
and is delayed by at most stream_chars + hold_back characters plus one call, never per chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.callout.handoff import Decision
from sidecar.core.types import JSONDict
from sidecar.features.guardrails.masking import MaskNumbering
from sidecar.features.guardrails.policy import Guardrail
from sidecar.features.guardrails.webhook.adapters import choice_path, completion_texts
from sidecar.features.guardrails.webhook.client import CallResult, WebhookClient
from sidecar.features.guardrails.webhook.config import OnError, WebhookConfig
from sidecar.features.guardrails.webhook.verdict import GuardrailUnavailable, Verdict, judge, masked
from sidecar.features.guardrails.webhook.wire import CallContext, Direction, Finding, Text
from sidecar.features.observability.metrics import GatewayMetrics

log = logging.getLogger("sidecar.guardrails")
# A span that keeps touching the end of a growing window is released (masked) past this many characters.
MAX_HELD = 16384


@dataclass
class _Window:
    """One guardrail's held text of one choice: `held` starts at `base` in the choice's whole answer."""

    held: str = ""
    base: int = 0
    fresh: int = 0  # characters added since the last call


class WebhookOutput:
    """The webhook guardrails of one exchange, applied in policy order to what the built-in ones let out."""

    def __init__(self, client: WebhookClient, guardrails: list[Guardrail], decision: Decision,
                 metrics: GatewayMetrics | None) -> None:
        self._client = client
        self._guardrails = guardrails
        self._decision = decision
        self._metrics = metrics
        self._numbering = MaskNumbering()
        self._windows: dict[tuple[str, int], _Window] = {}
        self._envelope: dict[str, Any] = {}

    # ---- whole completions -----------------------------------------------------------------
    async def check_completion(self, completion: JSONDict) -> None:
        for guardrail in self._guardrails:
            found = completion_texts(completion)
            if not found:
                return
            texts = [text for text, _ in found]
            result = await self._client.inspect(_config(guardrail), self._context(guardrail, partial=False), texts)
            verdict = self._settle(guardrail, result, lambda _: True)
            if verdict is None:
                continue
            replacements = verdict.replacements()
            for text, message in found:
                if text.path in replacements:
                    message["content"] = masked(text.text, replacements[text.path], self._numbering)

    # ---- streams ------------------------------------------------------------------------------
    async def check_chunks(self, chunks: list[JSONDict]) -> list[JSONDict]:
        out: list[JSONDict] = []
        for chunk in chunks:
            self._envelope = {key: chunk[key] for key in ("id", "created", "model") if key in chunk}
            choices = chunk.get("choices") or []
            if not choices and chunk.get("usage"):
                out.extend(await self.release())  # the usage chunk ends the answer: held text goes first
                out.append(chunk)
                continue
            for choice in choices:
                await self._choice(choice)
            if not choices or not all(_empty(choice) for choice in choices):
                out.append(chunk)
        return out

    async def release(self) -> list[JSONDict]:
        released = []
        for index in sorted({i for _, i in self._windows}):
            text = await self._pass(index, "", final=True)
            if text:
                released.append({**self._envelope, "object": "chat.completion.chunk",
                                 "choices": [{"index": index, "delta": {"content": text}, "finish_reason": None}]})
        return released

    async def _choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        index = choice.get("index", 0)
        final = choice.get("finish_reason") is not None
        if not isinstance(content, str) and not final:
            return
        text = await self._pass(index, content if isinstance(content, str) else "", final=final)
        if isinstance(content, str) or text:
            delta["content"] = text
            choice["delta"] = delta

    async def _pass(self, index: int, text: str, *, final: bool) -> str:
        """`text` through each guardrail's window of choice `index`; what all of them release."""
        for guardrail in self._guardrails:
            window = self._windows.setdefault((guardrail.key, index), _Window())
            window.held += text
            window.fresh += len(text)
            due = window.fresh >= _config(guardrail).stream_chars or len(window.held) >= MAX_HELD
            text = await self._scan(guardrail, index, window, final) if window.held and (due or final) else ""
        return text

    async def _scan(self, guardrail: Guardrail, index: int, window: _Window, final: bool) -> str:
        path = choice_path(index)
        sent = Text(path, window.held, role="assistant", offset=window.base)
        result = await self._client.inspect(_config(guardrail), self._context(guardrail, partial=not final), [sent])
        window.fresh = 0
        held = window.held
        cut = len(held) if final else max(0, len(held) - guardrail.hold_back)
        verdict = judge(result.findings, guardrail.action, _config(guardrail).threshold)
        spans = verdict.replacements().get(path, [])
        for finding in spans:
            assert finding.span is not None
            if finding.span.start < cut < finding.span.end:
                # Past a span that ends inside the window; before one that touches its end (it may grow).
                cut = finding.span.end if finding.span.end < len(held) else finding.span.start
        if cut == 0 and len(held) >= MAX_HELD:
            cut = len(held)
        self._settle(guardrail, result, lambda f: f.span is None or f.span.start < cut)
        window.held, window.base = held[cut:], window.base + cut
        return masked(held[:cut], [f for f in spans if f.span is not None and f.span.end <= cut], self._numbering)

    # ---- acting on an answer ------------------------------------------------------------------
    def _settle(self, guardrail: Guardrail, result: CallResult, counts: Callable[[Finding], bool]) -> Verdict | None:
        """Raises for a block or a closed failure; counts and logs the findings `counts` selects."""
        if not result.ok:
            if _config(guardrail).on_error is OnError.CLOSED:
                raise GuardrailUnavailable(guardrail.key, result, "answer")
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
            "direction": "output", "type": "webhook", "categories": categories}})

    def _context(self, guardrail: Guardrail, *, partial: bool) -> CallContext:
        decision = self._decision
        return CallContext(request_id=decision.request_id, guardrail=guardrail.key, direction=Direction.OUTPUT,
                           action=guardrail.action, model=decision.model_key, token_name=decision.token_name,
                           team=decision.team, partial=partial)


def _config(guardrail: Guardrail) -> WebhookConfig:
    assert guardrail.webhook is not None
    return guardrail.webhook


def _empty(choice: dict[str, Any]) -> bool:
    """A choice left with nothing to say once its text is held back."""
    delta = choice.get("delta") or {}
    return choice.get("finish_reason") is None and set(delta) <= {"content"} and not delta.get("content")
