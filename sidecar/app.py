"""The sidecar's app factory: everything is built here from one loaded policy snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from sidecar.appkeys import (
    DECISION_SIGNER,
    DRAIN,
    EXTENSIONS,
    HTTP_CLIENT,
    PIPELINE,
    POLICY_STORE,
    RECENT_DECISIONS,
    SETTINGS,
)
from sidecar.callout.endpoint import AUTHZ_PREFIX, callout_handler
from sidecar.callout.handoff import DecisionSigner
from sidecar.callout.pipeline import DecisionPipeline
from sidecar.callout.recent import RecentDecisions
from sidecar.core.endpoints import CHAT_PATH, EMBEDDINGS_PATH, MODELS_PATH, EndpointKind
from sidecar.extensions import Extensions
from sidecar.features.breaker import stage as breaker
from sidecar.features.drain import stage as drain
from sidecar.features.guardrails import install as guardrails
from sidecar.features.observability.breaker_refresh import install_breaker_refresh
from sidecar.features.observability.install import install_observability
from sidecar.features.quotas.install import install as install_quotas
from sidecar.features.status import install as status
from sidecar.forward.endpoint import handle_forward
from sidecar.forward.models import handle_models
from sidecar.policy.loader import load_policy
from sidecar.policy.store import PolicyStore
from sidecar.policy.watcher import install_watcher
from sidecar.responses import unexpected_errors
from sidecar.settings import Settings

# The client endpoints: (method, path, kind). Envoy sends each to the callout at AUTHZ_PREFIX + path,
# then routes the allowed request to the same path here.
CLIENT_ROUTES = (
    ("POST", CHAT_PATH, EndpointKind.CHAT),
    ("POST", EMBEDDINGS_PATH, EndpointKind.EMBEDDINGS),
    ("GET", MODELS_PATH, EndpointKind.MODELS),
    ("GET", MODELS_PATH + "/{model:.*}", EndpointKind.MODELS),
)


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    # One pooled client for all providers; per-request timeouts come from each deployment.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300)
    # No cookie jar: provider cookies must not be shared across clients, and skipping it saves work.
    async with aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        app[HTTP_CLIENT] = session
        yield


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    policy = request.app[POLICY_STORE].current
    if request.app[DRAIN].draining:
        return web.json_response({"status": "draining", "policy_version": policy.version}, status=503)
    return web.json_response({"status": "ready", "policy_version": policy.version})


def init_app(settings: Settings, store: PolicyStore | None = None) -> web.Application:
    # auto_decompress off: the sidecar never decodes a request body itself (Envoy decodes gzip and br
    # before the callout; callout/encoding.py refuses any coding left, from the header).
    app = web.Application(client_max_size=settings.max_body_bytes + 1024, middlewares=[unexpected_errors],
                          handler_args={"auto_decompress": False})
    app[SETTINGS] = settings
    app[POLICY_STORE] = store if store is not None else PolicyStore(load_policy(settings.policies_dir))
    extensions = Extensions()
    metrics = install_observability(app, extensions)  # first: later features record through app[METRICS]
    install_watcher(app, app[POLICY_STORE], metrics, settings.policy_poll_seconds)
    # Features install themselves; their callout stages run in callout.pipeline.STAGE_ORDER.
    drain.install(app, extensions, settings.drain_seconds)
    guardrails.install(app, extensions)
    breaker.install(app, extensions)
    install_breaker_refresh(app)  # several workers only: each records its breakers' states every second
    install_quotas(app, extensions, app[POLICY_STORE].current.limits.store, settings.decision_ttl_seconds,
                   settings.arrival_lease_seconds)
    # The status page's history; its listener is started by `serve` (sidecar/features/status/server.py).
    status.install(app, extensions)
    app[EXTENSIONS] = extensions
    app[PIPELINE] = DecisionPipeline(extensions.stages)
    app[RECENT_DECISIONS] = recent = RecentDecisions()
    app[DECISION_SIGNER] = DecisionSigner(settings.decision_key)
    app.cleanup_ctx.append(_http_client)
    for method, path, kind in CLIENT_ROUTES:
        app.router.add_route(method, AUTHZ_PREFIX + path, callout_handler(app, kind, settings, recent))
        app.router.add_route(method, path, handle_models if kind is EndpointKind.MODELS else handle_forward)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app
