"""Input guardrails in the callout: one scan of the messages, then block, mask or log.

PII detection runs once per text with the union of every applicable guardrail's categories,
and each guardrail keeps the findings in its own categories. Masks are not applied here (the
callout cannot change the body): they travel in the signed decision as edits that the
forwarding path applies to the body it sends to the provider.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from sidecar.callout.handoff import MAX_DECISION_HEADER_BYTES
from sidecar.callout.pipeline import Check
from sidecar.core.errors import GuardrailBlocked, InvalidRequest
from sidecar.features.guardrails.decision_keys import MASKS, MaskEdit
from sidecar.features.guardrails.entity import Entity
from sidecar.features.guardrails.injection import score_injection
from sidecar.features.guardrails.masking import MaskNumbering
from sidecar.features.guardrails.messages import MessageText, message_texts
from sidecar.features.guardrails.pii import find_entities, resolve_overlaps
from sidecar.features.guardrails.policy import FINDING_MESSAGES, Guardrail

log = logging.getLogger("sidecar.guardrails")
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
    texts = [t for t in message_texts(check.request.body["messages"])]
    scan = _Scan(texts, applicable)
    masks: list[tuple[MessageText, list[Entity]]] = []
    for guardrail in applicable:
        hits = scan.hits(guardrail)
        if not hits:
            continue
        _log_findings(check.request_id, guardrail, hits)
        # What explain prints and what the callout counts in gateway_guardrail_findings_total.
        check.trace.setdefault("guardrails", []).extend(
            {"guardrail": guardrail.key, "action": guardrail.action, "direction": "input", **finding}
            for finding in _findings(guardrail, hits))
        if guardrail.action == "block":
            raise GuardrailBlocked(guardrail.key, "block", _findings(guardrail, hits))
        if guardrail.action == "mask":
            masks.extend(hits)
    if masks:
        edits = _mask_edits(masks)
        if len(orjson.dumps(edits)) > _MAX_MASK_EDIT_BYTES:
            # Refused here (the quota reservation is undone): a larger header would fail in Envoy.
            raise InvalidRequest(f"The request has too many values to mask ({len(edits)})",
                                 param="messages", code="too_many_masked_values")
        check.put(MASKS, tuple(MaskEdit(*edit) for edit in edits))


class _Scan:
    """Runs each detector at most once over each text and shares the results."""

    def __init__(self, texts: list[MessageText], guardrails: list[Guardrail]) -> None:
        self.texts = texts
        categories = frozenset().union(*(g.categories for g in guardrails if g.type == "pii"))
        self._pii = [find_entities(t.text, categories) for t in texts] if categories else [[] for _ in texts]

    def hits(self, guardrail: Guardrail) -> list[tuple[MessageText, list[Entity]]]:
        read = [(i, t) for i, t in enumerate(self.texts) if guardrail.reads_role(t.role)]
        if guardrail.type == "size":
            return self._size(guardrail, [t for _, t in read])
        found = []
        for index, text in read:
            entities = self._entities(guardrail, index, text)
            if entities:
                found.append((text, entities))
        return found

    def _entities(self, guardrail: Guardrail, index: int, text: MessageText) -> list[Entity]:
        if guardrail.type == "pii":
            return [e for e in self._pii[index] if e.category in guardrail.categories]
        if guardrail.type == "pattern":
            assert guardrail.matcher is not None
            return guardrail.matcher.find(text.text)
        score = score_injection(text.text)
        return [Entity("prompt_injection", 0, len(text.text))] if score.score >= guardrail.threshold else []

    @staticmethod
    def _size(guardrail: Guardrail, texts: list[MessageText]) -> list[tuple[MessageText, list[Entity]]]:
        total = sum(len(t.text) for t in texts)
        too_many = guardrail.max_messages is not None and len({t.message_index for t in texts}) > guardrail.max_messages
        too_long = guardrail.max_chars is not None and total > guardrail.max_chars
        if not texts or not (too_many or too_long):
            return []
        return [(texts[-1], [Entity("size", 0, 0)])]


def _findings(guardrail: Guardrail, hits: list[tuple[MessageText, list[Entity]]]) -> list[dict[str, Any]]:
    """One finding per category and message; never the matched value."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for text, entities in hits:
        for entity in entities:
            key = (entity.category, text.message_index)
            seen.setdefault(key, {"category": entity.category, "message": FINDING_MESSAGES[guardrail.type],
                                  "message_index": text.message_index, "role": text.role})
    return list(seen.values())


def _mask_edits(masks: list[tuple[MessageText, list[Entity]]]) -> list[list[Any]]:
    """[message_index, part_index, start, end, placeholder], in reading order, numbered per request."""
    by_text: dict[tuple[int, int], tuple[MessageText, list[Entity]]] = {}
    for text, entities in masks:
        key = (text.message_index, text.part_index)
        by_text[key] = (text, by_text.get(key, (text, []))[1] + entities)
    numbering = MaskNumbering()
    edits = []
    for key in sorted(by_text):
        text, entities = by_text[key]
        for entity in resolve_overlaps(entities):
            placeholder = numbering.placeholder(entity.category, text.text[entity.start:entity.end])
            edits.append([text.message_index, text.part_index, entity.start, entity.end, placeholder])
    return edits


def _log_findings(request_id: str, guardrail: Guardrail, hits: list[tuple[MessageText, list[Entity]]]) -> None:
    log.info("guardrail finding", extra={"fields": {
        "request_id": request_id, "guardrail": guardrail.key, "action": guardrail.action, "direction": "input",
        "findings": [{"category": e.category, "message_index": t.message_index, "role": t.role}
                     for t, entities in hits for e in entities],
    }})
