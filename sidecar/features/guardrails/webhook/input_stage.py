"""Webhook guardrails on the request, in the callout: one call per guardrail and request.

It shares the "guardrails_input" slot of `callout.pipeline.STAGE_ORDER` with the built-in scan
(`alongside`): the calls start on the event loop before the built-in input guardrails run (in a
worker thread for a large body, see features/guardrails/install.py) and are awaited after them,
so the detectors' round trips overlap the scan. The built-in guardrails decide first: if one
blocks, the calls are cancelled. Then each webhook guardrail is applied in policy order: block,
mask (its replacements become walker edits that join the built-in ones in the signed decision,
`decision_keys.MASKS`; embeddings: `embeddings_input.INPUT_MASKS`) or log. A detector that cannot
answer is skipped (`on_error: open`) or refuses the request with 503 `guardrail_unavailable`
(`on_error: closed`). A denial here comes after the quota admission: the pipeline undoes the
reservation (`Check.on_deny`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.callout.handoff import MAX_DECISION_HEADER_BYTES
from sidecar.callout.pipeline import Check, Stage
from sidecar.core.embeddings import EmbeddingsRequest
from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import InvalidRequest
from sidecar.core.guardrail_webhook import OnError, WebhookConfig
from sidecar.core.walk import Edit
from sidecar.core.walk import Text as WalkText
from sidecar.features.guardrails.decision_keys import MASKS, encode_edits
from sidecar.features.guardrails.embeddings_input import INPUT_MASKS, InputMask
from sidecar.features.guardrails.input_check import requested_guardrails
from sidecar.features.guardrails.masking import MaskNumbering
from sidecar.features.guardrails.webhook.adapters import embeddings_texts, input_texts, mask_edits
from sidecar.features.guardrails.webhook.client import CallError, CallResult, WebhookClient
from sidecar.features.guardrails.webhook.verdict import Verdict, judge, replacements, unavailable
from sidecar.features.guardrails.webhook.wire import CallContext, Direction, Finding, Text
from sidecar.policy.guardrails import Guardrail, MessageScope

log = logging.getLogger("sidecar.guardrails")
# The edits travel base64-encoded (4/3 larger) in the decision header, as input_check's do.
_MAX_MASK_EDIT_BYTES = MAX_DECISION_HEADER_BYTES * 2 // 3


@dataclass
class _Call:
    """One guardrail's call: the texts sent, and (chat) the walker text behind each path."""

    guardrail: Guardrail
    texts: list[Text]
    sources: dict[str, WalkText]


_Pending = tuple[list[_Call], "asyncio.Future[list[CallResult]]"]


class WebhookInput:
    """The webhook guardrails' side of the "guardrails_input" callout stage."""

    def __init__(self, client: WebhookClient) -> None:
        self._client = client

    def alongside(self, builtin: Stage) -> Stage:
        """A stage that runs `builtin` (the built-in input scan) while the detectors are called."""

        async def stage(check: Check) -> None:
            pending = self._start(check)
            if pending is None:
                await builtin(check)
                return
            calls, results = pending
            await asyncio.sleep(0)  # lets the calls go out before the built-in scan holds the loop
            try:
                await builtin(check)
            except BaseException:
                results.cancel()
                raise
            self._finish(check, calls, await results)

        return stage

    def _start(self, check: Check) -> _Pending | None:
        if check.kind is EndpointKind.MODELS or check.request is None:
            return None
        assert check.token is not None and check.route is not None
        guardrail_set = check.policy.guardrails
        requested = requested_guardrails(check.request.body, guardrail_set.keys())
        calls = []
        for guardrail in guardrail_set.for_request(check.route.key, check.token.name, check.token.team,
                                                   requested).webhook_input:
            call = _call(check, guardrail)
            if call is not None and call.texts:
                calls.append(call)
        if not calls:
            return None
        results = asyncio.gather(*(self._client.inspect(_webhook(c.guardrail), _context(check, c.guardrail), c.texts)
                                   for c in calls))
        return calls, results

    def _finish(self, check: Check, calls: list[_Call], results: list[CallResult]) -> None:
        masks = _Masks(check)
        for call, result in zip(calls, results, strict=True):
            guardrail = call.guardrail
            verdict = judge(result.findings, guardrail.action, _webhook(guardrail).threshold)
            if check.dry_run:
                check.trace.setdefault("webhooks", {})[guardrail.key] = _explained(result, verdict)
            if not result.ok:
                if _webhook(guardrail).on_error is OnError.CLOSED:
                    raise unavailable(guardrail.key, result)
                continue  # open: logged and counted by the client; the request goes on
            if not verdict.findings:
                continue
            _record(check, guardrail, verdict)
            if verdict.blocks:
                raise verdict.blocked(guardrail.key)
            for path, findings in verdict.replacements().items():
                masks.add(call, path, findings)
        masks.save()


def _call(check: Check, guardrail: Guardrail) -> _Call | None:
    """What one guardrail sends for this request (None: nothing it can read)."""
    request = check.request
    if isinstance(request, EmbeddingsRequest):
        # Token-id input is refused or logged by the built-in embeddings stage (nothing to read).
        return None if request.token_ids else _Call(guardrail, embeddings_texts(request.texts), {})
    assert request is not None
    found = input_texts(request.body, user_only=guardrail.messages is MessageScope.USER)
    return _Call(guardrail, [text for text, _ in found], {text.path: source for text, source in found})


class _Masks:
    """The request's mask edits: the built-in ones already in the decision, then each webhook's."""

    def __init__(self, check: Check) -> None:
        self._check = check
        self._numbering = MaskNumbering()
        raw_edits, raw_inputs = check.extra.get(MASKS.name), check.extra.get(INPUT_MASKS.name)
        self._edits: list[Edit] = list(MASKS.decode(raw_edits)) if raw_edits else []
        self._inputs: list[InputMask] = list(INPUT_MASKS.decode(raw_inputs)) if raw_inputs else []
        # The built-in masks' placeholders stay theirs: another value never gets the same label.
        labels = [*(e.replacement for e in self._edits), *(m.placeholder for m in self._inputs)]
        self._numbering.reserve(" ".join(labels))
        self._added = False

    def add(self, call: _Call, path: str, findings: list[Finding]) -> None:
        text = next(t.text for t in call.texts if t.path == path)
        source = call.sources.get(path)
        if source is None:  # embeddings: `input[I]`
            index = int(path[len("input["):-1])
            taken = [(m.start, m.end, m.placeholder) for m in self._inputs if m.input_index == index]
            spans = replacements(text, findings, self._numbering, taken)
            self._inputs.extend(InputMask(index, start, end, placeholder) for start, end, placeholder in spans)
        else:
            edits = mask_edits(source, replacements(text, findings, self._numbering), self._edits)
            self._edits.extend(edits)
        self._added = True

    def save(self) -> None:
        if not self._added:
            return
        count = len(self._edits) + len(self._inputs)
        encoded = [encode_edits(tuple(self._edits)), INPUT_MASKS.encode(tuple(self._inputs))]
        if len(orjson.dumps(encoded)) > _MAX_MASK_EDIT_BYTES:
            # Refused here, the quota reservation is undone: a larger header would fail in Envoy.
            param = "input" if self._check.kind is EndpointKind.EMBEDDINGS else "messages"
            raise InvalidRequest(f"The request has too many values to mask ({count})", param=param,
                                 code="too_many_masked_values")
        if self._edits:
            self._check.put(MASKS, tuple(self._edits))
        if self._inputs:
            self._check.put(INPUT_MASKS, tuple(self._inputs))


def _webhook(guardrail: Guardrail) -> WebhookConfig:
    assert guardrail.webhook is not None
    return guardrail.webhook


def _context(check: Check, guardrail: Guardrail) -> CallContext:
    assert check.token is not None and check.route is not None
    return CallContext(request_id=check.request_id, guardrail=guardrail.key, direction=Direction.INPUT,
                       action=guardrail.action, model=check.route.key, token_name=check.token.name,
                       team=check.token.team, dry_run=check.dry_run)


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

