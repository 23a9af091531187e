"""The forwarding endpoint: Envoy routes allowed requests here, with the callout's decision.

It applies the decision's body edits, calls the provider through the pooled client and relays
the answer. It repeats no policy work: the signed decision says what was decided. It does check
that the decision applies to this request: the body bytes must be the ones the callout hashed,
the decision must not have expired, its policy version must still be known, and the body must
not be content-encoded (Envoy decompresses before the callout). A refused, authentic decision
releases what the callout reserved (`Extensions.refusals`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson
from aiohttp import web

from sidecar.appkeys import DECISION_SIGNER, DRAIN, EXTENSIONS, POLICY_STORE, RECENT_DECISIONS
from sidecar.callout.encoding import encoding_refusal
from sidecar.callout.handoff import DECISION_HEADER, Decision, InvalidDecision, RejectedDecision, verify
from sidecar.core.endpoints import CHAT_PATH, EMBEDDINGS_PATH, EndpointKind
from sidecar.core.errors import GatewayError, PermissionDenied, ServiceUnavailable
from sidecar.core.routes import Deployment
from sidecar.extensions import Extensions
from sidecar.forward.attempts import Attempts
from sidecar.forward.embeddings import relay_embeddings
from sidecar.forward.exchange import CLIENT_CLOSED, Exchange
from sidecar.forward.relay import relay_completion, relay_stream
from sidecar.policy.snapshot import Policy
from sidecar.policy.watcher import POLICY_WATCHER
from sidecar.providers.registry import provider_for
from sidecar.responses import error_response

log = logging.getLogger("sidecar.forwarding")
Relay = Callable[[web.Request, Attempts, Exchange], Awaitable[web.StreamResponse]]


async def _relay_chat(request: web.Request, attempts: Attempts, exchange: Exchange) -> web.StreamResponse:
    if exchange.decision.stream:
        return await relay_stream(request, attempts, exchange)
    return await relay_completion(attempts, exchange)


async def _relay_embeddings(_request: web.Request, attempts: Attempts, exchange: Exchange) -> web.StreamResponse:
    return await relay_embeddings(attempts, exchange)


@dataclass(frozen=True)
class _Forwarded:
    """What differs per forwarded endpoint, in one place: the kind its decision must name, the relay
    of its answer, and whether output guardrails read that answer (chat text; embeddings are vectors)."""

    kind: EndpointKind
    relay: Relay
    answers_text: bool


_FORWARDED: Mapping[str, _Forwarded] = MappingProxyType({
    CHAT_PATH: _Forwarded(EndpointKind.CHAT, _relay_chat, answers_text=True),
    EMBEDDINGS_PATH: _Forwarded(EndpointKind.EMBEDDINGS, _relay_embeddings, answers_text=False),
})


def routed_decision(request: web.Request, kind: EndpointKind) -> Decision:
    """The callout's signed decision for this request; raises PermissionDenied (403
    `missing_decision`) without one, or with one decided for another endpoint."""
    try:
        decision = request.app[RECENT_DECISIONS].take(request.headers.get(DECISION_HEADER),
                                                      request.app[DECISION_SIGNER])
    except InvalidDecision:
        raise _missing_decision() from None
    if decision.endpoint is not kind:
        raise _missing_decision()
    return decision


def _missing_decision() -> PermissionDenied:
    return PermissionDenied("Requests must pass the gateway's policy check", code="missing_decision")


async def decision_policy(app: web.Application, decision: Decision) -> Policy:
    """The policy snapshot the decision was made on; raises ServiceUnavailable (503, Retry-After)
    when this process does not hold it, even after one look at the folder (another worker may
    have reloaded first): a decision is never applied under another policy."""
    policy = app[POLICY_STORE].get(decision.policy_version)
    if policy is None and POLICY_WATCHER in app:
        policy = await app[POLICY_WATCHER].catch_up(decision.policy_version)
    if policy is None:
        raise ServiceUnavailable("The gateway's policy changed while the request was in flight; retry it",
                                 code="policy_version_unknown", headers={"Retry-After": "1"})
    return policy


async def handle_forward(request: web.Request) -> web.StreamResponse:
    """Chat completions and embeddings: the provider call with fallbacks, then the relay."""
    app = request.app
    try:
        decision = app[RECENT_DECISIONS].take(request.headers.get(DECISION_HEADER), app[DECISION_SIGNER])
    except InvalidDecision:
        # Nothing in an unsigned header can be trusted, not even which reservation it names.
        return error_response(_missing_decision(), request.headers.get("X-Request-Id", ""))
    extensions = app[EXTENSIONS]
    started = time.monotonic()
    forwarded = _FORWARDED[request.path]
    try:
        if decision.endpoint is not forwarded.kind:
            raise _missing_decision()  # authentic, but decided for another endpoint
        raw = await _admitted_body(request, decision)
        policy = await decision_policy(app, decision)
        candidates = deployment_candidates(policy, decision)
    except GatewayError as error:
        _log_refusal(decision, error)
        await _refused(decision, extensions)
        return error_response(error, decision.request_id)
    try:
        for arrival in extensions.arrivals:  # claims the reservation: a replayed decision stops here
            await arrival(decision)
    except GatewayError as error:
        _log_refusal(decision, error)
        return error_response(error, decision.request_id)
    text = forwarded.answers_text
    guards = [g for g in (factory(decision, policy) for factory in extensions.output_guards) if g is not None] \
        if text else []
    async_guards = [g for g in (factory(decision, policy) for factory in extensions.async_output_guards)
                    if g is not None] if text else []
    exchange = Exchange(decision=decision, policy=policy, deployment=candidates[0],
                        provider=provider_for(candidates[0]), started=started, guards=guards,
                        async_guards=async_guards)
    try:
        body = edited_body(raw)
        for edit in extensions.request_editors:
            edit(body, decision, policy)
        # Fallbacks happen inside `attempts`, before the relay sends the client its first byte.
        attempts = Attempts(request, exchange, body, candidates)
        del body  # the attempts hold it until an answer starts; an open stream need not (memory)
        with app[DRAIN].track(exchange.watch):
            return await forwarded.relay(request, attempts, exchange)
    except GatewayError as error:
        return exchange.fail(error)
    finally:
        # Shielded, and for every ending: a client disconnect cancels this handler, but usage,
        # quota slots and breaker bookkeeping must still be settled.
        await asyncio.shield(_finish(exchange, extensions))


async def _admitted_body(request: web.Request, decision: Decision) -> bytes:
    """The body bytes, if the decision was made for exactly them; raises GatewayError if not."""
    refusal = encoding_refusal(request.headers)  # from the header, before the body is read
    if refusal is not None:
        raise refusal
    raw = await request.read()
    verify_admitted(decision, raw)
    return raw


def verify_admitted(decision: Decision, raw: bytes) -> None:
    """Raises PermissionDenied (403 `decision_expired` / `decision_body_mismatch`) unless the
    decision is alive and was made for exactly these body bytes."""
    try:
        verify(decision, raw)
    except RejectedDecision as rejected:
        raise PermissionDenied(str(rejected), code=rejected.code) from None


def _log_refusal(decision: Decision, error: GatewayError) -> None:
    log.warning("forward refused", extra={"fields": {
        "request_id": decision.request_id, "token": decision.token_name, "status": error.status, "code": error.code}})


async def _refused(decision: Decision, extensions: Extensions) -> None:
    """Release what the callout reserved for a verified decision the forwarding path refuses."""
    for refusal in extensions.refusals:
        try:
            await asyncio.shield(refusal(decision))
        except Exception:
            log.exception("refusal cleanup failed", extra={"fields": {"request_id": decision.request_id}})


async def _finish(exchange: Exchange, extensions: Extensions) -> None:
    if exchange.status == 0:
        # No answer was started: the handler was cancelled because the client left. The access log,
        # the metric and the settlement all see the same 499.
        exchange.status, exchange.error = CLIENT_CLOSED, exchange.error or "client_disconnected"
    for observe in extensions.exchange_observers:
        try:
            observe(exchange)
        except Exception:  # one broken observer must not skip the finishers or the access log
            log.exception("exchange observer failed", extra={"fields": {"request_id": exchange.decision.request_id}})
    for finisher in extensions.finishers:
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


def edited_body(raw: bytes) -> dict[str, Any]:
    """The provider-bound body before the request editors: the client's JSON without the gateway's
    own `request_id` (the bytes were verified against the decision's digest, so they parse)."""
    body: dict[str, Any] = orjson.loads(raw)
    body.pop("request_id", None)  # ours, not the provider's
    # `stream_options.include_usage` is each deployment's to set (providers.openai_compat.fit_openai_body).
    return body
