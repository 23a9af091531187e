"""Plugs webhook guardrails into the app: the client's lifecycle, the input stage, the output guard."""

from __future__ import annotations

from aiohttp import web

from sidecar.appkeys import METRICS
from sidecar.callout.handoff import Decision
from sidecar.extensions import Extensions
from sidecar.features.guardrails.decision_keys import JSON_ANSWER, REQUESTED_GUARDRAILS
from sidecar.features.guardrails.webhook.client import WebhookClient
from sidecar.features.guardrails.webhook.input_stage import WebhookInput
from sidecar.features.guardrails.webhook.output_guard import WebhookOutput
from sidecar.policy.snapshot import Policy

WEBHOOKS = web.AppKey("webhook_client", WebhookClient)


def install(app: web.Application, extensions: Extensions) -> WebhookInput:
    """Owns one WebhookClient (pooled session in the app's cleanup context, `app[WEBHOOKS]`) and
    adds the output guard factory (chat answers only: the forwarding path asks it for chat
    exchanges). Returns the input side, whose `alongside(stage)` the guardrails' install puts in
    the "guardrails_input" slot around the built-in scan."""
    metrics = app.get(METRICS)
    client = WebhookClient(metrics)
    app[WEBHOOKS] = client
    app.cleanup_ctx.append(lambda _: client.session())

    def output_guard(decision: Decision, policy: Policy) -> WebhookOutput | None:
        requested = decision.get(REQUESTED_GUARDRAILS) or frozenset()
        guardrails = list(policy.guardrails.for_request(decision.model_key, decision.token_name, decision.team,
                                                        requested).webhook_output)
        if not guardrails:
            return None
        return WebhookOutput(client, guardrails, decision, metrics, json_answer=decision.get(JSON_ANSWER) is True)

    extensions.async_output_guards.append(output_guard)
    return WebhookInput(client)
