"""Plugs the guardrails into the request path (see sidecar/extensions.py)."""

from __future__ import annotations

from sidecar.callout.pipeline import Check, per_kind
from sidecar.core.endpoints import EndpointKind
from sidecar.extensions import Extensions
from sidecar.features.guardrails.embeddings_input import apply_input_masks, check_embeddings_input
from sidecar.features.guardrails.input_check import REQUEST_FIELD, check_input
from sidecar.features.guardrails.output_check import output_guards_for
from sidecar.features.guardrails.request_masking import apply_masks


async def _remember_requested(check: Check) -> None:
    # Opt-in guardrails named by the request also apply to its output on the forwarding path.
    assert check.request is not None
    requested = check.request.body.get(REQUEST_FIELD)
    if requested:
        check.extra["requested_guardrails"] = list(requested)


def install(extensions: Extensions) -> None:
    input_stage = per_kind({EndpointKind.CHAT: check_input, EndpointKind.EMBEDDINGS: check_embeddings_input})
    extensions.stages.extend([input_stage, _remember_requested])
    extensions.request_editors.extend([apply_masks, apply_input_masks])
    extensions.output_guards.append(output_guards_for)
