"""Plugs the guardrails into the request path (see sidecar/extensions.py)."""

from __future__ import annotations

from sidecar.callout.pipeline import Check
from sidecar.extensions import Extensions
from sidecar.features.guardrails.input_check import REQUEST_FIELD, check_input
from sidecar.features.guardrails.output_check import JSON_ANSWER_KEY, output_guards_for, wants_json_answer
from sidecar.features.guardrails.request_masking import apply_masks


async def _remember_requested(check: Check) -> None:
    # Opt-in guardrails named by the request also apply to its output on the forwarding path.
    assert check.request is not None
    requested = check.request.body.get(REQUEST_FIELD)
    if requested:
        check.extra["requested_guardrails"] = list(requested)
    # Output masks keep a JSON answer valid JSON; the forwarding path learns it from the decision.
    if wants_json_answer(check.request.body):
        check.extra[JSON_ANSWER_KEY] = True


def install(extensions: Extensions) -> None:
    extensions.stages.extend([check_input, _remember_requested])
    extensions.request_editors.append(apply_masks)
    extensions.output_guards.append(output_guards_for)
