"""GET /models and GET /models/{model}: OpenAI's model list and model object, from the policy.

The callout already decided (token valid; for one model, a key the token may use, else 404), so
this answers from the decision's policy snapshot without a provider: the keys the token's
`models` allow-list names (every key when it has none), in policy order. Each entry is OpenAI's
model object plus the gateway's `category`; `created` is 0 and `owned_by` is "gateway", because
the policy knows neither when nor by whom a provider's model was made.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiohttp import web

from sidecar.appkeys import METRICS
from sidecar.callout.handoff import Decision
from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import GatewayError, ModelNotFound
from sidecar.core.routes import ModelRoute
from sidecar.core.types import JSONDict
from sidecar.forward.endpoint import decision_policy, routed_decision, verify_admitted
from sidecar.policy.snapshot import Policy
from sidecar.responses import JSON_CONTENT_TYPE, error_response

access_log = logging.getLogger("sidecar.access")
OWNED_BY = "gateway"


async def handle_models(request: web.Request) -> web.Response:
    started = time.monotonic()
    try:
        decision = routed_decision(request, EndpointKind.MODELS)
    except GatewayError as error:
        return error_response(error, request.headers.get("X-Request-Id", ""))
    try:
        verify_admitted(decision, await request.read())
        body = model_answer(await decision_policy(request.app, decision), decision)
        status = 200
        response = web.Response(body=orjson.dumps(body), content_type=JSON_CONTENT_TYPE,
                                headers={"X-Request-Id": decision.request_id})
    except GatewayError as error:  # expired, the policy gone, or the key left it since the callout
        status, response = error.status, error_response(error, decision.request_id)
    _account(request, decision, status, started)
    return response


def model_answer(policy: Policy, decision: Decision) -> JSONDict:
    """OpenAI's `{"object": "list", "data": [model, ...]}`, or one model object for a key."""
    if decision.model_key:
        route = policy.models.routes.get(decision.model_key)
        if route is None:
            raise ModelNotFound(f"The model '{decision.model_key}' does not exist", param="model")
        return model_object(route)
    token = next((r for r in policy.tokens.by_hash.values() if r.name == decision.token_name), None)
    routes = [r for r in policy.models.routes.values() if token is not None and token.allows_model(r.key)]
    return {"object": "list", "data": [model_object(route) for route in routes]}


def model_object(route: ModelRoute) -> JSONDict:
    return {"id": route.key, "object": "model", "created": 0, "owned_by": OWNED_BY, "category": route.category}


def _account(request: web.Request, decision: Decision, status: int, started: float) -> None:
    """The same request count and access line as a forwarded exchange (no deployment, no tokens)."""
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.request(decision.model_key or None, status, decision.token_name)
    access_log.info("request", extra={"fields": {
        "request_id": decision.request_id, "endpoint": decision.endpoint, "token": decision.token_name,
        "team": decision.team, "model": decision.model_key or None, "deployment": None, "stream": False,
        "status": status, "prompt_tokens": None, "completion_tokens": None,
        "latency_ms": round((time.monotonic() - started) * 1000, 1), "ttfb_ms": None, "error": None,
    }})
