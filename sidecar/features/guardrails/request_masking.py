"""Forwarding path: apply the callout's mask edits to the body the provider will see."""

from __future__ import annotations

from typing import Any

from sidecar.callout.handoff import Decision
from sidecar.core.walk import Edit, apply_edits
from sidecar.features.guardrails.input_check import MASKS_KEY, REQUEST_FIELD
from sidecar.policy.snapshot import Policy


def apply_masks(body: dict[str, Any], decision: Decision, policy: Policy) -> None:
    """Replace each masked span of the decision's edits (`[[path, [[start, end, placeholder]...]]...]`)."""
    body.pop(REQUEST_FIELD, None)  # the gateway's own field, not the provider's
    edits = decision.extra.get(MASKS_KEY)
    if not edits:
        return
    apply_edits(body, [Edit(tuple(path), start, end, placeholder)
                       for path, spans in edits for start, end, placeholder in spans])
