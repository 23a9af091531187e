"""The callout's policy decision: one pass over the request, a pipeline of named stages.

Stages run in one declared order, `STAGE_ORDER`, whatever order features were installed in:
cheap decisions first (token, body, model, drain, breaker, the quota admission), the costly
guardrail scan last, so a request over its rate limit costs no scan. A stage reads and
annotates the `Check` and raises a GatewayError to deny; a stage that reserved something
registers an undo (`Check.on_deny`) that runs if a later stage denies, so nothing is reserved
twice or left reserved. The same pipeline serves the live callout and `explain`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from sidecar.callout.handoff import (
    DEFAULT_DECISION_TTL_SECONDS,
    Decision,
    DecisionKey,
    JSONValue,
    annotate,
)
from sidecar.core.chat import is_valid_request_id, parse_chat_request
from sidecar.core.embeddings import parse_embeddings_request
from sidecar.core.endpoints import CATEGORIES, ClientRequest, EndpointKind
from sidecar.core.errors import GatewayError, ModelNotFound
from sidecar.core.routes import ModelRoute, check_category
from sidecar.core.tokens import TokenRecord, TokenStore
from sidecar.policy.snapshot import Policy

log = logging.getLogger("sidecar.callout")
T = TypeVar("T")
Undo = Callable[[], Awaitable[None]]


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
    # Stage annotations, encoded by their DecisionKey: write with `put`, never directly.
    extra: dict[str, JSONValue] = field(default_factory=dict)
    # Headers for the client on allowed requests too (e.g. x-ratelimit-*).
    client_headers: dict[str, str] = field(default_factory=dict)
    # `explain`: decide as the callout would, but change no runtime state (reserve or consume
    # no quota, move no breaker).
    dry_run: bool = False
    # What each stage found, for `explain` (JSON-able; keys such as "guardrails", "limits",
    # "breaker"); cheap stages fill it always, costly ones only when `dry_run`.
    trace: dict[str, Any] = field(default_factory=dict)
    # Undo what a stage reserved, if a later stage denies (run newest first).
    on_deny: list[Undo] = field(default_factory=list)

    def put(self, key: DecisionKey[T], value: T) -> None:
        """Annotate the decision with a stage's typed value (see DecisionKey)."""
        annotate(self.extra, key, value)

    def decision(self, ttl_seconds: float = DEFAULT_DECISION_TTL_SECONDS, now: float | None = None) -> Decision:
        """The signed hand-off of an allowed check; expires `ttl_seconds` after `now` (epoch s)."""
        token = self.token
        route = self.route
        request = self.request
        assert token is not None
        # The model list has neither a body nor a model: an empty key, nothing to stream.
        assert self.kind is EndpointKind.MODELS or (request is not None and route is not None)
        # Built without the frozen dataclass's __init__ (one object.__setattr__ per field, about
        # as much as the rest of this method): the same fields, in declaration order, so the
        # object, its == and its JSON are those of `Decision(...)` (tests/unit/callout/test_decision.py).
        decision: Decision = object.__new__(Decision)
        object.__setattr__(decision, "__dict__", {
            "request_id": self.request_id,
            "token_name": token.name,
            "team": token.team,
            "model_key": route.key if route else "",
            "deployments": self.deployments,
            "stream": request.stream if request else False,
            "client_wants_usage": request.include_usage if request else False,
            "policy_version": self.policy.version,
            "body_sha256": hashlib.sha256(self.raw_body).hexdigest(),  # body_digest(), without its call
            "expires_at": (time.time() if now is None else now) + ttl_seconds,
            "extra": dict(self.extra),
            "endpoint": self.kind,
        })
        return decision


class Denied(Exception):
    """A GatewayError together with the request id and headers known when it was raised."""

    def __init__(self, error: GatewayError, check: Check) -> None:
        super().__init__(error.message)
        self.error = error
        self.check = check


Stage = Callable[[Check], Awaitable[None]]


def authenticate_now(check: Check) -> None:
    """The token: 401 `AuthenticationFailed` for a missing, unknown or expired one."""
    check.token = check.policy.tokens.authenticate(check.authorization)


_PARSERS: Mapping[EndpointKind, Callable[[bytes], ClientRequest]] = {
    EndpointKind.CHAT: parse_chat_request,
    EndpointKind.EMBEDDINGS: parse_embeddings_request,
}


def parse_body_now(check: Check) -> None:
    """The endpoint's own body parser: 400 `invalid_request_error` with `param`."""
    request = check.request = _PARSERS[check.kind](check.raw_body)
    if request.request_id is not None:
        check.request_id = request.request_id


def resolve_model_now(check: Check) -> None:
    """404 for an unknown key, 403 outside the token's allow-list (whatever the model's
    category: a 422 would tell the client the model exists), 422 for the wrong category."""
    request, token = check.request, check.token
    assert request is not None and token is not None
    route = check.policy.models.routes.get(request.model)
    if route is None:
        route = check.policy.models.find(request.model)  # raises ModelNotFound
    if token.models is not None and route.key not in token.models:
        TokenStore.check_model(token, route.key)  # raises PermissionDenied
    category = CATEGORIES.get(check.kind)
    if category is not None and route.category != category:
        check_category(route, category)
    check.route = route
    check.deployments = route._deployment_names  # per route, not per request (see ModelRoute)


# The core stages as pipeline stages; `decide` calls their synchronous bodies directly (three
# coroutines fewer per request) when the pipeline runs them first, as ordered_stages does.
async def authenticate(check: Check) -> None:
    authenticate_now(check)


async def parse_body(check: Check) -> None:
    parse_body_now(check)


async def resolve_model(check: Check) -> None:
    resolve_model_now(check)


CORE_STAGES: dict[str, Stage] = {"authenticate": authenticate, "parse_body": parse_body,
                                  "resolve_model": resolve_model}
# The one order stages run in. Cheap and deciding first; the quota admission reserves, and the
# guardrail scans after it undo that reservation (Check.on_deny) when they deny.
STAGE_ORDER: tuple[str, ...] = (
    "authenticate", "parse_body", "resolve_model",  # token, body, model: microseconds
    "drain",  # a draining sidecar admits nothing
    "breaker",  # which deployments are usable
    "quotas",  # rate, concurrency and quota admission: one store call, reserves
    "guardrails_input",  # the costly scans (large texts off the event loop)
    "guardrails_requested",  # opt-in guardrails named by the request, for the output side
)


def ordered_stages(named: Mapping[str, Stage]) -> tuple[Stage, ...]:
    """The core stages and `named` in STAGE_ORDER; raises ValueError for a name not in it."""
    unknown = sorted(set(named) - set(STAGE_ORDER))
    if unknown:
        raise ValueError(f"callout stages {unknown} are not in STAGE_ORDER")
    stages = {**CORE_STAGES, **named}
    return tuple(stages[name] for name in STAGE_ORDER if name in stages)


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


# GET /models answers from the policy alone: no provider, no guardrail, no quota, no breaker.
MODELS_STAGES: tuple[Stage, ...] = (authenticate, resolve_listed_model)


class DecisionPipeline:
    """Named stages run in STAGE_ORDER; a plain sequence (tests) runs after the core stages."""

    def __init__(self, extra_stages: Mapping[str, Stage] | Sequence[Stage] = ()) -> None:
        if isinstance(extra_stages, Mapping):
            self.stages: tuple[Stage, ...] = ordered_stages(extra_stages)
        else:
            self.stages = ordered_stages({}) + tuple(extra_stages)
        # None when a feature replaced a core stage: then every stage runs as a stage.
        core = tuple(CORE_STAGES.values())
        self._after_core = self.stages[len(core):] if self.stages[:len(core)] == core else None

    def stages_for(self, kind: EndpointKind) -> tuple[Stage, ...]:
        """Chat and embeddings run every stage; the model list only the token and key checks."""
        return MODELS_STAGES if kind is EndpointKind.MODELS else self.stages

    async def decide(self, policy: Policy, raw_body: bytes, authorization: str | None,
                     header_request_id: str | None, *, dry_run: bool = False,
                     kind: EndpointKind = EndpointKind.CHAT, path_model: str | None = None) -> Check:
        """Returns the finished Check (call `.decision()`), or raises Denied."""
        check = Check(policy, raw_body, authorization, resolve_request_id(header_request_id), kind=kind,
                      path_model=path_model, dry_run=dry_run)
        stages = self.stages_for(kind)
        try:
            if stages is self.stages and self._after_core is not None:
                authenticate_now(check)
                parse_body_now(check)
                resolve_model_now(check)
                stages = self._after_core
            for stage in stages:
                await stage(check)
        except GatewayError as error:
            await undo(check)
            if check.request is None:
                # Denied before the body was read (a bad token): the id is still the body's if it has one.
                check.request_id = _body_request_id(raw_body) or check.request_id
            raise Denied(error, check) from None
        except BaseException:  # a bug, or Envoy gave up on the callout: release what was reserved
            await undo(check)
            raise
        return check


async def undo(check: Check) -> None:
    """Runs the check's undo actions, newest first; shielded from cancellation, never raises."""
    while check.on_deny:
        action = check.on_deny.pop()
        try:
            await asyncio.shield(action())
        except Exception:  # one failed undo must not skip the others
            log.exception("undo after a denial failed", extra={"fields": {"request_id": check.request_id}})


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
    """`req_` + 24 hex digits (96 random bits; os.urandom is what secrets.token_hex reads)."""
    return "req_" + os.urandom(12).hex()
