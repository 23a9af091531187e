"""Plugs the guardrails into the request path (see sidecar/extensions.py)."""

from __future__ import annotations

from sidecar.callout.pipeline import Check
from sidecar.extensions import Extensions
from sidecar.features.guardrails.input_check import REQUEST_FIELD, check_input
from sidecar.features.guardrails.output_check import output_guards_for
from sidecar.features.guardrails.request_masking import apply_masks
from sidecar.features.guardrails.webhook.input_stage import WebhookInput
from sidecar.features.guardrails.webhook.install import concurrently


async def _remember_requested(check: Check) -> None:
    # Opt-in guardrails named by the request also apply to its output on the forwarding path.
    assert check.request is not None
    requested = check.request.body.get(REQUEST_FIELD)
    if requested:
        check.extra["requested_guardrails"] = list(requested)


def install(extensions: Extensions, webhooks: WebhookInput | None = None) -> None:
    # Webhook guardrails' detectors are called while the built-in input guardrails scan.
    extensions.stages.extend([concurrently(check_input, webhooks), _remember_requested])
    extensions.request_editors.append(apply_masks)
    extensions.output_guards.append(output_guards_for)
