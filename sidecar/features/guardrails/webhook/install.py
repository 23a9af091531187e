"""Plugs webhook guardrails into the app: the client's lifecycle, the callout stage, the output guard."""

from __future__ import annotations

from aiohttp import web

from sidecar.appkeys import METRICS
from sidecar.callout.handoff import Decision
from sidecar.callout.pipeline import Stage
from sidecar.extensions import Extensions
from sidecar.features.guardrails.webhook.client import WebhookClient
from sidecar.features.guardrails.webhook.input_stage import WebhookInput
from sidecar.features.guardrails.webhook.output_guard import WebhookOutput
from sidecar.policy.snapshot import Policy

WEBHOOKS = web.AppKey("webhook_client", WebhookClient)


def install(app: web.Application, extensions: Extensions) -> WebhookInput:
    """Returns the input side, whose `alongside(stage)` runs the built-in input guardrails during the calls."""
    metrics = app.get(METRICS)
    client = WebhookClient(metrics)
    app[WEBHOOKS] = client
    app.cleanup_ctx.append(lambda _: client.session())

    def output_guard(decision: Decision, policy: Policy) -> WebhookOutput | None:
        requested = frozenset(decision.extra.get("requested_guardrails", ()))
        guardrails = [g for g in policy.guardrails.applicable(decision.model_key, decision.token_name, decision.team,
                                                              requested)
                      if g.webhook is not None and g.direction in ("output", "both")]
        return WebhookOutput(client, guardrails, decision, metrics) if guardrails else None

    extensions.async_output_guards.append(output_guard)
    return WebhookInput(client)


def concurrently(builtin: Stage, webhooks: WebhookInput | None) -> Stage:
    return builtin if webhooks is None else webhooks.alongside(builtin)
