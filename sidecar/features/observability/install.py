"""Metrics and decision logs: `/metrics`, the callout's decision line, the forwarding finisher.

Both reach the request path through `extensions`: a decision observer (the callout calls it
with each decision) and an exchange observer (the forwarding path, when an exchange ends).
Each request is counted once in `gateway_requests_total`: a denied one by the callout, an
allowed one by the finisher when its exchange ends (with the provider's status).
Logs carry names, codes and numbers only: never the token, message content or findings' values.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from aiohttp import web

from sidecar.appkeys import METRICS, POLICY_STORE
from sidecar.callout.pipeline import Check
from sidecar.core.errors import GatewayError
from sidecar.core.limits import MICRO_USD
from sidecar.extensions import Extensions
from sidecar.features.observability.breaker_refresh import record_breakers
from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.forward.exchange import CLIENT_CLOSED, Exchange

decision_log = logging.getLogger("sidecar.decision")
_MAX_LOGGED_MODEL = 100


def install_observability(app: web.Application, extensions: Extensions) -> GatewayMetrics:
    """Called first in the app factory, so features installed after it find `app[METRICS]` and the
    callout calls its decision observer (metrics, the decision log line) before theirs."""
    metrics = GatewayMetrics()
    app[METRICS] = metrics
    metrics.policy_loaded(app[POLICY_STORE].current.version, time.time())

    extensions.exchange_observers.append(lambda exchange: record_exchange(metrics, exchange))
    # A partial, not a closure: the callout's hot path gets no extra Python frame per decision.
    extensions.decision_observers.append(partial(record_callout, metrics))
    app.router.add_get("/metrics", _metrics)
    return metrics


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    record_breakers(request.app)  # read at scrape time: a breaker's cool-down ends without an event
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})


def record_exchange(metrics: GatewayMetrics, exchange: Exchange) -> None:
    """Counts one forwarded exchange when it ends: status (499 for a client gone), latency, time to first byte, tokens.
    """
    decision, now = exchange.decision, time.monotonic()
    metrics.request(decision.model_key, exchange.status or CLIENT_CLOSED, decision.token_name)
    for guard in exchange.guards:
        # Output guards that report findings expose them as dicts with guardrail, category, action.
        for finding in getattr(guard, "findings", ()):
            metrics.guardrail_finding(finding["guardrail"], finding["category"], finding["action"])
    usage = exchange.usage
    price = exchange.policy.limits.price(decision.model_key)
    if usage is not None and price is not None:
        metrics.spent(decision.model_key, decision.token_name,
                      price.micro_usd(usage.prompt_tokens, usage.completion_tokens) / MICRO_USD)
    metrics.exchange(
        decision.model_key, decision.token_name, now - exchange.started,
        exchange.first_byte - exchange.started if exchange.first_byte else None,
        usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
    )


def record_callout(metrics: GatewayMetrics, check: Check, error: GatewayError | None, seconds: float) -> None:
    """One callout decision (`seconds` it took, `error` None when allowed): its metrics, for a denial its
    count (allowed ones count when they end), and its one decision log line."""
    metrics.callout_seconds(seconds)
    for finding in check.trace.get("guardrails", ()):
        metrics.guardrail_finding(finding["guardrail"], finding["category"], finding["action"])
    for limit in check.trace.get("limits_denied", ()):
        metrics.limit_denied(limit)
    if error is not None:
        metrics.request(check.route.key if check.route else None, error.status,
                        check.token.name if check.token else None)
    decision_log.info("decision", extra={"fields": decision_fields(check, error, seconds)})


def decision_fields(check: Check, error: GatewayError | None, seconds: float) -> dict[str, object]:
    """The callout decision log line's fields (request id, token, team, model, status, code, decision_ms …)."""
    return {
        "request_id": check.request_id,
        "endpoint": check.kind,
        "token": check.token.name if check.token else None,
        "team": check.token.team if check.token else None,
        "model": logged_model(check),
        "status": error.status if error else 200,
        "code": (error.code or error.error_type) if error else None,
        "deployments": list(check.deployments),
        "stream": check.request.stream if check.request else None,
        "policy_version": check.policy.version,
        "decision_ms": round(seconds * 1000, 2),
    }


def logged_model(check: Check) -> str | None:
    """The model a log line or the status page names: the resolved key, else what the client asked for (cut
    short: it is client input), else None."""
    if check.route is not None:
        return check.route.key
    requested = check.request.model if check.request else check.path_model
    return requested[:_MAX_LOGGED_MODEL] if requested else None
