"""Forwarding path: apply the callout's mask edits to the body the provider will see."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sidecar.callout.handoff import Decision
from sidecar.features.guardrails.decision_keys import MASKS
from sidecar.features.guardrails.input_check import REQUEST_FIELD
from sidecar.features.guardrails.messages import get_text, replace_text
from sidecar.policy.snapshot import Policy


def apply_masks(body: dict[str, Any], decision: Decision, policy: Policy) -> None:
    body.pop(REQUEST_FIELD, None)  # the gateway's own field, not the provider's
    edits = decision.get(MASKS)
    if not edits:
        return
    by_text: dict[tuple[int, int], list[tuple[int, int, str]]] = defaultdict(list)
    for message_index, part_index, start, end, placeholder in edits:
        by_text[(message_index, part_index)].append((start, end, placeholder))
    messages = body["messages"]
    for (message_index, part_index), spans in by_text.items():
        text = get_text(messages, message_index, part_index)
        # Right to left, so earlier offsets stay valid while later spans are replaced.
        for start, end, placeholder in sorted(spans, reverse=True):
            text = text[:start] + placeholder + text[end:]
        replace_text(messages, message_index, part_index, text)
