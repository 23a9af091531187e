"""The forwarding endpoint: Envoy routes allowed requests here, with the callout's decision.

It applies the decision's body edits, calls the provider through the pooled client and relays
the answer. It repeats no policy work: the signed decision says what was decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from sidecar.appkeys import DRAIN, EXTENSIONS, POLICY_STORE, SETTINGS
from sidecar.callout.handoff import DECISION_HEADER, Decision, InvalidDecision, decode
from sidecar.core.errors import GatewayError, PermissionDenied, ServiceUnavailable
from sidecar.core.routes import Deployment
from sidecar.extensions import Finisher
from sidecar.forward.attempts import Attempts
from sidecar.forward.exchange import CLIENT_CLOSED, Exchange
from sidecar.forward.relay import relay_completion, relay_stream
from sidecar.policy.snapshot import Policy
from sidecar.providers.registry import provider_for
from sidecar.responses import error_response

log = logging.getLogger("sidecar.forwarding")


async def handle_forward(request: web.Request) -> web.StreamResponse:
    app = request.app
    try:
        decision = decode(request.headers.get(DECISION_HEADER), app[SETTINGS].decision_key)
    except InvalidDecision:
        rid = request.headers.get("X-Request-Id", "")
        return error_response(PermissionDenied("Requests must pass the gateway's policy check",
                                               code="missing_decision"), rid)
    extensions = app[EXTENSIONS]
    policy = app[POLICY_STORE].get(decision.policy_version)
    started = time.monotonic()
    try:
        candidates = deployment_candidates(policy, decision)
    except GatewayError as error:
        # Only if the decision's snapshot was dropped and its model removed since; a quota slot
        # held by such a request expires with its lease.
        return error_response(error, decision.request_id)
    guards = [g for g in (factory(decision, policy) for factory in extensions.output_guards) if g is not None]
    exchange = Exchange(decision=decision, policy=policy, deployment=candidates[0],
                        provider=provider_for(candidates[0]), started=started, guards=guards)
    try:
        body = edited_body(await request.read(), decision)
        for edit in extensions.request_editors:
            edit(body, decision, policy)
        # Fallbacks happen inside `attempts`, before the relay sends the client its first byte.
        attempts = Attempts(request, exchange, body, candidates)
        with app[DRAIN].track(exchange.watch):
            if decision.stream:
                return await relay_stream(request, attempts, exchange)
            return await relay_completion(attempts, exchange)
    except GatewayError as error:
        return exchange.fail(error)
    finally:
        # Shielded, and for every ending: a client disconnect cancels this handler, but usage,
        # quota slots and breaker bookkeeping must still be settled.
        await asyncio.shield(_finish(exchange, extensions.finishers))


async def _finish(exchange: Exchange, finishers: list[Finisher]) -> None:
    if exchange.status == 0:
        # No answer was started: the handler was cancelled because the client left. The access log,
        # the metric and the settlement all see the same 499.
        exchange.status, exchange.error = CLIENT_CLOSED, exchange.error or "client_disconnected"
    for finisher in finishers:
        try:
            await finisher(exchange)
        except Exception:  # one broken finisher must not skip the others or the access log
            log.exception("finisher failed", extra={"fields": {"request_id": exchange.decision.request_id}})
    exchange.log_access()


def deployment_candidates(policy: Policy, decision: Decision) -> list[Deployment]:
    """The decision's deployments, in its order, that the policy snapshot still defines."""
    route = policy.models.routes.get(decision.model_key)
    by_name = {d.name: d for d in route.deployments} if route else {}
    found = [by_name[name] for name in decision.deployments if name in by_name]
    if not found:
        raise ServiceUnavailable(f"No deployment of '{decision.model_key}' is available", code="no_deployment")
    return found


def edited_body(raw: bytes, decision: Decision) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(raw)
    body.pop("request_id", None)  # ours, not the provider's
    # `stream_options.include_usage` is each deployment's to set (providers.openai_compat.fit_openai_body).
    return body
