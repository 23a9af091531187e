"""Forwarding path: apply the callout's mask edits to the body the provider will see."""

from __future__ import annotations

from typing import Any

from sidecar.callout.handoff import Decision
from sidecar.core.walk import apply_edits
from sidecar.features.guardrails.decision_keys import MASKS
from sidecar.features.guardrails.input_check import REQUEST_FIELD
from sidecar.policy.snapshot import Policy


def apply_masks(body: dict[str, Any], decision: Decision, policy: Policy) -> None:
    """Replace each masked span of the decision's edits (walker paths into the body) in place."""
    body.pop(REQUEST_FIELD, None)  # the gateway's own field, not the provider's
    edits = decision.get(MASKS)
    if not edits:
        return
    apply_edits(body, list(edits))
