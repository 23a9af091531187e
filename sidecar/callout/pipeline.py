"""The callout's policy decision: one pass over the request, a pipeline of stages.

Token, body validation and model resolution always run; the app factory appends the stages
that need runtime state (guardrails, breaker, quotas). A stage reads and annotates the `Check`
and raises a GatewayError to deny. The same pipeline serves the live callout and `explain`.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.callout.handoff import Decision
from sidecar.core.chat import is_valid_request_id, parse_chat_request
from sidecar.core.embeddings import parse_embeddings_request
from sidecar.core.endpoints import ClientRequest, EndpointKind
from sidecar.core.errors import GatewayError, ModelNotFound
from sidecar.core.routes import ModelRoute, check_category
from sidecar.core.tokens import TokenRecord, TokenStore
from sidecar.policy.snapshot import Policy


@dataclass
class Check:
    """Working state of one callout; stages fill it in order."""

    policy: Policy
    raw_body: bytes
    authorization: str | None
    request_id: str
    kind: EndpointKind = EndpointKind.CHAT
    path_model: str | None = None  # GET /models/{model}: the key in the path
    token: TokenRecord | None = None
    request: ClientRequest | None = None  # the parsed body (None for GET /models)
    route: ModelRoute | None = None
    deployments: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # Headers for the client on allowed requests too (e.g. x-ratelimit-*).
    client_headers: dict[str, str] = field(default_factory=dict)
    # `explain`: decide as the callout would, but change no runtime state (reserve or consume
    # no quota, move no breaker).
    dry_run: bool = False
    # What each stage found, for `explain` (JSON-able; keys such as "guardrails", "limits",
    # "breaker"); cheap stages fill it always, costly ones only when `dry_run`.
    trace: dict[str, Any] = field(default_factory=dict)

    def decision(self) -> Decision:
        assert self.token is not None
        # The model list has neither a body nor a model: an empty key, nothing to stream.
        assert self.kind is EndpointKind.MODELS or (self.request is not None and self.route is not None)
        return Decision(
            request_id=self.request_id,
            token_name=self.token.name,
            team=self.token.team,
            model_key=self.route.key if self.route else "",
            deployments=self.deployments,
            stream=self.request.stream if self.request else False,
            client_wants_usage=self.request.include_usage if self.request else False,
            policy_version=self.policy.version,
            extra=self.extra,
            endpoint=self.kind,
        )


class Denied(Exception):
    """A GatewayError together with the request id and headers known when it was raised."""

    def __init__(self, error: GatewayError, check: Check) -> None:
        super().__init__(error.message)
        self.error = error
        self.check = check


Stage = Callable[[Check], Awaitable[None]]


async def authenticate(check: Check) -> None:
    check.token = check.policy.tokens.authenticate(check.authorization)


_PARSERS: Mapping[EndpointKind, Callable[[bytes], ClientRequest]] = {
    EndpointKind.CHAT: parse_chat_request,
    EndpointKind.EMBEDDINGS: parse_embeddings_request,
}


async def parse_body(check: Check) -> None:
    """The endpoint's own body parser: 400 `invalid_request_error` with `param`."""
    check.request = _PARSERS[check.kind](check.raw_body)
    if check.request.request_id is not None:
        check.request_id = check.request.request_id


async def resolve_model(check: Check) -> None:
    """404 for an unknown key, 403 outside the token's allow-list (whatever the model's
    category: a 422 would tell the client the model exists), 422 for the wrong category."""
    assert check.request is not None and check.token is not None
    route = check.policy.models.find(check.request.model)
    TokenStore.check_model(check.token, route.key)
    category = check.kind.category
    if category is not None:
        check_category(route, category)
    check.route = route
    check.deployments = tuple(d.name for d in route.deployments)


async def resolve_listed_model(check: Check) -> None:
    """GET /models/{model}: a key the policy does not define and one the token may not use are
    the same 404, so the answer reveals no key outside the allow-list. The list needs nothing."""
    assert check.token is not None
    if check.path_model is None:
        return
    route = check.policy.models.routes.get(check.path_model)
    if route is None or not check.token.allows_model(route.key):
        raise ModelNotFound(f"The model '{check.path_model[:100]}' does not exist", param="model")
    check.route = route


def per_kind(stages: Mapping[EndpointKind, Stage]) -> Stage:
    """One stage slot that runs the endpoint's own stage (none when the mapping has no entry)."""

    async def stage(check: Check) -> None:
        chosen = stages.get(check.kind)
        if chosen is not None:
            await chosen(check)

    return stage


CORE_STAGES: tuple[Stage, ...] = (authenticate, parse_body, resolve_model)
# GET /models answers from the policy alone: no provider, no guardrail, no quota, no breaker.
MODELS_STAGES: tuple[Stage, ...] = (authenticate, resolve_listed_model)


class DecisionPipeline:
    def __init__(self, extra_stages: Sequence[Stage] = ()) -> None:
        self.stages: tuple[Stage, ...] = CORE_STAGES + tuple(extra_stages)

    def stages_for(self, kind: EndpointKind) -> tuple[Stage, ...]:
        """Chat and embeddings run every stage; the model list only the token and key checks."""
        return MODELS_STAGES if kind is EndpointKind.MODELS else self.stages

    async def decide(self, policy: Policy, raw_body: bytes, authorization: str | None,
                     header_request_id: str | None, *, dry_run: bool = False,
                     kind: EndpointKind = EndpointKind.CHAT, path_model: str | None = None) -> Check:
        """Returns the finished Check (call `.decision()`), or raises Denied."""
        check = Check(policy, raw_body, authorization, resolve_request_id(header_request_id), kind=kind,
                      path_model=path_model, dry_run=dry_run)
        try:
            for stage in self.stages_for(kind):
                await stage(check)
        except GatewayError as error:
            if check.request is None:
                # Denied before the body was read (a bad token): the id is still the body's if it has one.
                check.request_id = _body_request_id(raw_body) or check.request_id
            raise Denied(error, check) from None
        return check


def _body_request_id(raw_body: bytes) -> str | None:
    try:
        body = orjson.loads(raw_body)
    except orjson.JSONDecodeError:
        return None
    value = body.get("request_id") if isinstance(body, dict) else None
    return value if is_valid_request_id(value) else None


def resolve_request_id(header_value: str | None) -> str:
    """Envoy already put the client's X-Request-Id or a fresh `req_…` here; never trust it blindly."""
    if header_value and is_valid_request_id(header_value):
        return header_value
    return new_request_id()


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)
