"""Webhook guardrails on the request, in the callout: one call per guardrail and request.

The calls start before the built-in input guardrails run and are awaited after them, so the
detectors' round trips overlap the built-in scan (fully once that scan runs off the event loop).
The built-in guardrails decide first: if one blocks, the calls are cancelled. Then each webhook
guardrail is applied in policy order: block, mask (its replacements join the built-in mask edits
that travel in the signed decision) or log. A detector that cannot answer is skipped
(`on_error: open`) or refuses the request with 503 `guardrail_unavailable` (`on_error: closed`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from sidecar.callout.handoff import MAX_DECISION_HEADER_BYTES
from sidecar.callout.pipeline import Check, Stage
from sidecar.core.errors import InvalidRequest
from sidecar.features.guardrails.input_check import MASKS_KEY, requested_guardrails
from sidecar.features.guardrails.masking import MaskNumbering
from sidecar.features.guardrails.policy import Guardrail
from sidecar.features.guardrails.webhook.adapters import MessageAddress, input_texts
from sidecar.features.guardrails.webhook.client import CallError, CallResult, WebhookClient
from sidecar.features.guardrails.webhook.config import OnError
from sidecar.features.guardrails.webhook.verdict import GuardrailUnavailable, Verdict, judge, placeholder
from sidecar.features.guardrails.webhook.wire import CallContext, Direction, Text

log = logging.getLogger("sidecar.guardrails")
# The edits travel base64-encoded (4/3 larger) in the decision header, as input_check's do.
_MAX_MASK_EDIT_BYTES = MAX_DECISION_HEADER_BYTES * 2 // 3
MaskEdit = list[Any]  # [message_index, part_index, start, end, placeholder], as input_check writes them


class _Call:
    """One guardrail's call in flight: what was sent, and where each path lives in the request."""

    def __init__(self, guardrail: Guardrail, sent: list[tuple[Text, MessageAddress]]) -> None:
        self.guardrail = guardrail
        self.texts = [text for text, _ in sent]
        self.addresses = {text.path: address for text, address in sent}


class WebhookInput:
    def __init__(self, client: WebhookClient) -> None:
        self._client = client

    def alongside(self, builtin: Stage) -> Stage:
        """A stage that runs `builtin` (the built-in input guardrails) while the detectors are called."""

        async def stage(check: Check) -> None:
            calls = self._start(check)
            if calls is None:
                await builtin(check)
                return
            await asyncio.sleep(0)  # lets the calls go out before the built-in scan holds the loop
            try:
                await builtin(check)
            except BaseException:
                calls[1].cancel()
                raise
            self._finish(check, calls[0], await calls[1])

        return stage

    def _start(self, check: Check) -> tuple[list[_Call], asyncio.Future[list[CallResult]]] | None:
        assert check.request is not None and check.token is not None and check.route is not None
        guardrail_set = check.policy.guardrails
        requested = requested_guardrails(check.request.body, guardrail_set.keys())
        calls = []
        for guardrail in guardrail_set.applicable(check.route.key, check.token.name, check.token.team, requested):
            if guardrail.webhook is not None and guardrail.direction in ("input", "both"):
                sent = input_texts(check.request.body["messages"], user_only=guardrail.messages == "user")
                if sent:
                    calls.append(_Call(guardrail, sent))
        if not calls:
            return None
        pending = asyncio.gather(*(self._client.inspect(c.guardrail.webhook, _context(check, c.guardrail), c.texts)
                                   for c in calls if c.guardrail.webhook is not None))
        return calls, pending

    def _finish(self, check: Check, calls: list[_Call], results: list[CallResult]) -> None:
        edits: list[MaskEdit] = list(check.extra.get(MASKS_KEY) or ())
        added = False
        numbering = MaskNumbering()
        for call, result in zip(calls, results, strict=True):
            guardrail = call.guardrail
            assert guardrail.webhook is not None
            verdict = judge(result.findings, guardrail.action, guardrail.webhook.threshold)
            if check.dry_run:
                check.trace.setdefault("webhooks", {})[guardrail.key] = _explained(result, verdict)
            if not result.ok:
                if guardrail.webhook.on_error is OnError.CLOSED:
                    raise GuardrailUnavailable(guardrail.key, result)
                continue  # open: logged and counted by the client; the request goes on
            if not verdict.findings:
                continue
            _record(check, guardrail, verdict)
            if verdict.blocks:
                raise verdict.blocked(guardrail.key)
            for path, findings in verdict.replacements().items():
                added |= _add_edits(edits, call, path, findings, numbering)
        if added:
            if len(orjson.dumps(edits)) > _MAX_MASK_EDIT_BYTES:
                raise InvalidRequest(f"The request has too many values to mask ({len(edits)})",
                                     param="messages", code="too_many_masked_values")
            check.extra[MASKS_KEY] = edits


def _context(check: Check, guardrail: Guardrail) -> CallContext:
    assert check.token is not None and check.route is not None
    return CallContext(request_id=check.request_id, guardrail=guardrail.key, direction=Direction.INPUT,
                       action=guardrail.action, model=check.route.key, token_name=check.token.name,
                       team=check.token.team, dry_run=check.dry_run)


def _add_edits(edits: list[MaskEdit], call: _Call, path: str, findings: list[Any], numbering: MaskNumbering) -> bool:
    """Adds the spans that overlap no edit already there (a built-in mask or an earlier webhook's)."""
    message_index, part_index = call.addresses[path]
    text = next(t.text for t in call.texts if t.path == path)
    taken = [(e[2], e[3]) for e in edits if (e[0], e[1]) == (message_index, part_index)]
    added = False
    for finding in findings:
        start, end = finding.span.start, finding.span.end
        if any(start < taken_end and taken_start < end for taken_start, taken_end in taken):
            continue
        edits.append([message_index, part_index, start, end, placeholder(finding, text[start:end], numbering)])
        taken.append((start, end))
        added = True
    return added


def _record(check: Check, guardrail: Guardrail, verdict: Verdict) -> None:
    """Trace entries (what the callout counts in gateway_guardrail_findings_total) and one log line."""
    shown = [finding.public() for finding in verdict.findings]
    distinct = {(f["category"], f.get("path")): f for f in shown}
    check.trace.setdefault("guardrails", []).extend(
        {"guardrail": guardrail.key, "action": guardrail.action, "direction": "input", **finding}
        for finding in distinct.values())
    log.info("guardrail finding", extra={"fields": {
        "request_id": check.request_id, "guardrail": guardrail.key, "action": guardrail.action,
        "direction": "input", "type": "webhook",
        "findings": [{"category": f["category"], "path": f.get("path")} for f in shown]}})


def _explained(result: CallResult, verdict: Verdict) -> dict[str, Any]:
    """What `explain` shows of one call: sent or not, the outcome, and every finding that counted."""
    return {"called": result.error is not CallError.BREAKER_OPEN, "outcome": result.error or "ok",
            "detail": result.detail or None, "duration_ms": round(result.seconds * 1000, 1),
            "findings": [f.public() for f in result.findings], "counted": len(verdict.findings)}
