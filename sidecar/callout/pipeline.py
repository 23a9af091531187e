"""The callout's policy decision: one pass over the request, a pipeline of stages.

Token, body validation and model resolution always run; the app factory appends the stages
that need runtime state (guardrails, breaker, quotas). A stage reads and annotates the `Check`
and raises a GatewayError to deny. The same pipeline serves the live callout and `explain`.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.callout.handoff import Decision
from sidecar.core.chat import ChatRequest, is_valid_request_id, parse_chat_request
from sidecar.core.errors import GatewayError
from sidecar.core.routes import ModelRoute
from sidecar.core.tokens import TokenRecord, TokenStore
from sidecar.policy.snapshot import Policy


@dataclass
class Check:
    """Working state of one callout; stages fill it in order."""

    policy: Policy
    raw_body: bytes
    authorization: str | None
    request_id: str
    token: TokenRecord | None = None
    request: ChatRequest | None = None
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
        assert self.token is not None and self.request is not None and self.route is not None
        return Decision(
            request_id=self.request_id,
            token_name=self.token.name,
            team=self.token.team,
            model_key=self.route.key,
            deployments=self.deployments,
            stream=self.request.stream,
            client_wants_usage=self.request.include_usage,
            policy_version=self.policy.version,
            extra=self.extra,
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


async def parse_body(check: Check) -> None:
    check.request = parse_chat_request(check.raw_body)
    if check.request.request_id is not None:
        check.request_id = check.request.request_id


async def resolve_model(check: Check) -> None:
    assert check.request is not None and check.token is not None
    route = check.policy.models.resolve_llm(check.request.model)
    TokenStore.check_model(check.token, route.key)
    check.route = route
    check.deployments = tuple(d.name for d in route.deployments)


CORE_STAGES: tuple[Stage, ...] = (authenticate, parse_body, resolve_model)


class DecisionPipeline:
    def __init__(self, extra_stages: Sequence[Stage] = ()) -> None:
        self.stages: tuple[Stage, ...] = CORE_STAGES + tuple(extra_stages)

    async def decide(self, policy: Policy, raw_body: bytes, authorization: str | None,
                     header_request_id: str | None, *, dry_run: bool = False) -> Check:
        """Returns the finished Check (call `.decision()`), or raises Denied."""
        check = Check(policy, raw_body, authorization, resolve_request_id(header_request_id), dry_run=dry_run)
        try:
            for stage in self.stages:
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
