"""The forwarding endpoint: Envoy routes allowed requests here, with the callout's decision.

It applies the decision's body edits, calls the provider through the pooled client and relays
the answer. It repeats no policy work: the signed decision says what was decided.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from sidecar.appkeys import EXTENSIONS, HTTP_CLIENT, POLICY_STORE, SETTINGS
from sidecar.errors import (
    GatewayError,
    PermissionDenied,
    ServiceUnavailable,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from sidecar.extensions import Finisher
from sidecar.handoff import DECISION_HEADER, Decision, InvalidDecision, decode
from sidecar.models import Deployment
from sidecar.policy.snapshot import Policy
from sidecar.providers.base import UpstreamRequest
from sidecar.providers.registry import provider_for
from sidecar.relay import Exchange, relay_completion, relay_stream
from sidecar.responses import error_response

log = logging.getLogger("sidecar.forwarding")
_STREAM_BODY_OVER = 1024 * 1024


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
        deployment = _deployment(policy, decision)
        body = _edited_body(await request.read(), decision)
        for edit in extensions.request_editors:
            edit(body, decision, policy)
        provider = provider_for(deployment)
        upstream = provider.build_request(body, request_id=decision.request_id)
    except GatewayError as error:
        return error_response(error, decision.request_id)
    guards = [g for g in (factory(decision, policy) for factory in extensions.output_guards) if g is not None]
    exchange = Exchange(decision=decision, policy=policy, deployment=deployment, provider=provider,
                        started=started, guards=guards)
    try:
        if decision.stream:
            return await relay_stream(request, _send(request, upstream, deployment), exchange)
        return await relay_completion(_send(request, upstream, deployment), exchange)
    finally:
        # Shielded: a client disconnect cancels this handler, but usage and breaker bookkeeping
        # must still happen.
        await asyncio.shield(_finish(exchange, extensions.finishers))


async def _finish(exchange: Exchange, finishers: list[Finisher]) -> None:
    for finisher in finishers:
        try:
            await finisher(exchange)
        except Exception:  # one broken finisher must not skip the others or the access log
            log.exception("finisher failed", extra={"fields": {"request_id": exchange.decision.request_id}})
    exchange.log_access()


def _deployment(policy: Policy, decision: Decision) -> Deployment:
    route = policy.models.routes.get(decision.model_key)
    by_name = {d.name: d for d in route.deployments} if route else {}
    for name in decision.deployments:
        if name in by_name:
            return by_name[name]
    raise ServiceUnavailable(f"No deployment of '{decision.model_key}' is available", code="no_deployment")


def _edited_body(raw: bytes, decision: Decision) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(raw)
    body.pop("request_id", None)  # ours, not the provider's
    if decision.stream:
        # Ask for usage even when the client did not: accounting needs it. The relay removes
        # the extra usage chunk again when the client did not ask for it.
        options = body.get("stream_options") or {}
        body["stream_options"] = {**options, "include_usage": True}
    return body


class _send:
    """Async context manager around one provider POST, mapping transport failures to our errors."""

    def __init__(self, request: web.Request, upstream: UpstreamRequest, deployment: Deployment) -> None:
        self._session = request.app[HTTP_CLIENT]
        self._upstream = upstream
        timeouts = deployment.timeouts
        self._timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect,
                                              sock_read=timeouts.first_byte)
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            body = self._upstream.body
            self._response = await self._session.post(
                # Large bodies go as a stream, so the event loop is not blocked writing them.
                self._upstream.url, data=io.BytesIO(body) if len(body) > _STREAM_BODY_OVER else body,
                headers=dict(self._upstream.headers),
                timeout=self._timeout,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(f"Provider unreachable: {type(exc).__name__}") from exc
        return self._response

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._response is None:
            return
        if exc_type is None:
            self._response.release()  # back to the pool
        else:
            # Client gone or stream broken: drop the connection so the provider stops generating.
            self._response.close()

