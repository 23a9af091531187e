"""Input guardrails in the callout: one scan of the messages, then block, mask or log.

Every text of the request that `sidecar.core.walk.request_texts` yields is read (content and
text parts of every role, refusal, tool-call and function-call arguments, tool results),
through its normalised view (view.py; arguments read as JSON). PII detection runs once per
text with the union of every applicable guardrail's categories, and each guardrail keeps the
findings in its own categories. Masks are not applied here (the callout cannot change the
body): they travel in the signed decision as edits (`[path, [[start, end, placeholder], ...]]`
in raw characters of the string at `path`) that the forwarding path applies to the body it
sends to the provider; masked arguments stay valid JSON.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from sidecar.callout.handoff import MAX_DECISION_HEADER_BYTES
from sidecar.callout.pipeline import Check
from sidecar.core.errors import GuardrailBlocked, InvalidRequest
from sidecar.core.walk import Edit, Text, request_texts, text_edits
from sidecar.features.guardrails.detect import Finder, entities_of
from sidecar.features.guardrails.entity import Entity
from sidecar.features.guardrails.injection import score_injection
from sidecar.features.guardrails.masking import MaskNumbering, json_safe, view_replacements
from sidecar.features.guardrails.pii import resolve_overlaps
from sidecar.features.guardrails.policy import FINDING_MESSAGES, Action, Guardrail, GuardrailType
from sidecar.features.guardrails.view import View, view_of

log = logging.getLogger("sidecar.guardrails")
MASKS_KEY = "masks"
# The edits travel base64-encoded (4/3 larger) in the decision header, beside the other fields.
_MAX_MASK_EDIT_BYTES = MAX_DECISION_HEADER_BYTES * 2 // 3
REQUEST_FIELD = "guardrails"  # a client may switch on opt-in guardrails by key


def requested_guardrails(body: dict[str, Any], known: frozenset[str]) -> frozenset[str]:
    value = body.get(REQUEST_FIELD)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("'guardrails' must be an array of guardrail keys", param=REQUEST_FIELD,
                             code="invalid_type")
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidRequest(f"Unknown guardrail {', '.join(unknown)}", param=REQUEST_FIELD,
                             code="unknown_guardrail")
    return frozenset(value)


async def check_input(check: Check) -> None:
    assert check.request is not None and check.token is not None and check.route is not None
    guardrail_set = check.policy.guardrails
    requested = requested_guardrails(check.request.body, guardrail_set.keys())
    applicable = [g for g in guardrail_set.applicable(check.route.key, check.token.name, check.token.team, requested)
                  if g.checks_input]
    if not applicable:
        return
    scan = _Scan(list(request_texts(check.request.body)), applicable)
    masks: dict[int, list[Entity]] = {}
    for guardrail in applicable:
        hits = scan.hits(guardrail)
        if not hits:
            continue
        _log_findings(check.request_id, guardrail, [(scan.texts[i], e) for i, e in hits])
        # What explain prints and what the callout counts in gateway_guardrail_findings_total.
        findings = _findings(guardrail, [(scan.texts[i], e) for i, e in hits])
        check.trace.setdefault("guardrails", []).extend(
            {"guardrail": guardrail.key, "action": guardrail.action, "direction": "input", **finding}
            for finding in findings)
        if guardrail.action is Action.BLOCK:
            raise GuardrailBlocked(guardrail.key, Action.BLOCK, findings)
        if guardrail.action is Action.MASK:
            for index, entities in hits:
                masks.setdefault(index, []).extend(entities)
    if masks:
        edits = _mask_edits(scan, masks)
        if len(orjson.dumps(edits)) > _MAX_MASK_EDIT_BYTES:
            # Refused here, before quotas reserve anything: a larger header would fail in Envoy.
            count = sum(len(spans) for _, spans in edits)
            raise InvalidRequest(f"The request has too many values to mask ({count})",
                                 param="messages", code="too_many_masked_values")
        check.extra[MASKS_KEY] = edits


class _Scan:
    """Runs each detector at most once over each text's normalised view and shares the results."""

    def __init__(self, texts: list[Text], guardrails: list[Guardrail]) -> None:
        self.texts = texts
        self.views: list[View] = [view_of(t.text, json=t.field.is_json) for t in texts]
        self._finder = Finder(guardrails)
        self._pii = [self._finder.pii(v.text) for v in self.views]

    def hits(self, guardrail: Guardrail) -> list[tuple[int, list[Entity]]]:
        """(text index, entities in view coordinates) for each text the guardrail reads and flags."""
        read = [i for i, t in enumerate(self.texts) if guardrail.reads_role(t.role)]
        if guardrail.type is GuardrailType.SIZE:
            return self._size(guardrail, read)
        found = []
        for index in read:
            entities = self._entities(guardrail, index)
            if entities:
                found.append((index, entities))
        return found

    def _entities(self, guardrail: Guardrail, index: int) -> list[Entity]:
        text = self.views[index].text
        if guardrail.type is GuardrailType.PROMPT_INJECTION:
            score = score_injection(text)
            return [Entity("prompt_injection", 0, len(text))] if score.score >= guardrail.threshold else []
        return entities_of(guardrail, text, self._pii[index])

    def _size(self, guardrail: Guardrail, read: list[int]) -> list[tuple[int, list[Entity]]]:
        total = sum(len(self.texts[i].text) for i in read)
        messages = {self.texts[i].index for i in read}
        too_many = guardrail.max_messages is not None and len(messages) > guardrail.max_messages
        too_long = guardrail.max_chars is not None and total > guardrail.max_chars
        if not read or not (too_many or too_long):
            return []
        return [(read[-1], [Entity("size", 0, 0)])]


def _findings(guardrail: Guardrail, hits: list[tuple[Text, list[Entity]]]) -> list[dict[str, Any]]:
    """One finding per category and message; never the matched value."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for text, entities in hits:
        for entity in entities:
            key = (entity.category, text.index)
            seen.setdefault(key, {"category": entity.category, "message": FINDING_MESSAGES[guardrail.type],
                                  "message_index": text.index, "role": text.role})
    return list(seen.values())


def _mask_edits(scan: _Scan, masks: dict[int, list[Entity]]) -> list[list[Any]]:
    """[[path, [[start, end, placeholder], ...]], ...] in reading order, numbered per request."""
    numbering = MaskNumbering()
    edits: list[Edit] = []
    for index in sorted(masks):
        text, view = scan.texts[index], scan.views[index]
        spans = view_replacements(view, resolve_overlaps(masks[index]), numbering)
        if text.field.is_json:
            spans = json_safe(text.text, spans)
        for start, end, placeholder in spans:
            edits.extend(text_edits(text, start, end, placeholder))
    grouped: dict[tuple[Any, ...], list[list[Any]]] = {}
    for edit in edits:
        grouped.setdefault(edit.path, []).append([edit.start, edit.end, edit.replacement])
    return [[list(path), spans] for path, spans in grouped.items()]


def _log_findings(request_id: str, guardrail: Guardrail, hits: list[tuple[Text, list[Entity]]]) -> None:
    log.info("guardrail finding", extra={"fields": {
        "request_id": request_id, "guardrail": guardrail.key, "action": guardrail.action, "direction": "input",
        "findings": [{"category": e.category, "message_index": t.index, "role": t.role, "field": t.field.value}
                     for t, entities in hits for e in entities],
    }})
