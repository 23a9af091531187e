"""`python -m sidecar explain`: what the gateway would decide for one request, without calling a provider.

It builds the real app (so every installed stage runs: guardrails, breaker, quotas) and runs the
callout's own `DecisionPipeline` stages on a `Check` marked `dry_run`, so no quota is consumed
and no breaker moves. Allowed requests then go through the forwarding path's body edits and the
provider's translation, to show the exact body the provider would get (never its headers: they
carry the credential).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from sidecar.app import init_app
from sidecar.appkeys import EXTENSIONS, PIPELINE
from sidecar.callout.pipeline import Check, Stage, authenticate, new_request_id
from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import AuthenticationFailed, GatewayError
from sidecar.forward.endpoint import deployment_candidates, edited_body  # the forwarding path's own, not copies
from sidecar.policy.snapshot import Policy
from sidecar.policy.store import PolicyStore
from sidecar.providers.base import build_upstream
from sidecar.providers.registry import provider_for
from sidecar.settings import Settings

AppFactory = Callable[[Settings, PolicyStore], web.Application]
# Trace sections every explanation shows, empty when no installed stage filled them.
SHOWN_SECTIONS = ("guardrails", "limits", "breaker")


@dataclass
class Explanation:
    """What `explain` found for one request: the decision's status and code, token, model, trace and the body."""

    policy_version: str
    policy_source: str
    request_id: str
    status: int
    token: dict[str, Any] | None
    model: dict[str, Any] | None
    stream: bool | None
    trace: dict[str, Any]
    headers: dict[str, str]
    body: Any  # the error object of a denial, the provider-bound request body of an allowed request
    requested_model: str | None = None
    endpoint: EndpointKind = EndpointKind.CHAT
    provider_url: str | None = None
    code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        """True when the callout would let the request through (status 200)."""
        return self.status == 200

    def as_json(self) -> dict[str, Any]:
        """The explanation as a JSON-ready dict (`explain --json`); every shown trace section is present."""
        data = dataclasses.asdict(self)
        trace = data.pop("trace")
        for section in SHOWN_SECTIONS:
            data[section] = trace.pop(section, None)
        data["other_findings"] = trace
        data["allowed"] = self.allowed
        data["dry_run"] = True
        return data


async def explain(settings: Settings, policy: Policy, raw_body: bytes, *, token: str | None = None,
                  token_name: str | None = None, endpoint: EndpointKind | None = None,
                  app_factory: AppFactory = init_app) -> Explanation:
    """Decide `raw_body` as the callout would, for a token given as the secret or by its policy name.

    `endpoint`: chat completions or embeddings; None tells them apart by the body (`input`
    without `messages` is an embeddings request).
    """
    settings = dataclasses.replace(settings, policies_dir=Path(policy.source), policy_poll_seconds=0)
    app = app_factory(settings, PolicyStore(policy))
    runner = web.AppRunner(app)
    await runner.setup()  # runs cleanup_ctx: stages that need runtime state (backends) get it
    try:
        return await _run(app, policy, raw_body, token, token_name, endpoint or body_endpoint(raw_body))
    finally:
        await runner.cleanup()


def body_endpoint(raw_body: bytes) -> EndpointKind:
    """EMBEDDINGS for a JSON object with `input` and no `messages`; CHAT otherwise (its parser reports)."""
    try:
        body = orjson.loads(raw_body)
    except orjson.JSONDecodeError:
        return EndpointKind.CHAT
    is_embeddings = isinstance(body, dict) and "input" in body and "messages" not in body
    return EndpointKind.EMBEDDINGS if is_embeddings else EndpointKind.CHAT


async def _run(app: web.Application, policy: Policy, raw_body: bytes, token: str | None,
               token_name: str | None, endpoint: EndpointKind) -> Explanation:
    token = token.removeprefix("Bearer ").strip() if token else None
    check = Check(policy, raw_body, f"Bearer {token}" if token else None, new_request_id(), kind=endpoint,
                  dry_run=True)
    stages: list[Stage] = [_as_named(token_name) if stage is authenticate and token_name else stage
                           for stage in app[PIPELINE].stages_for(endpoint)]
    try:
        for stage in stages:
            await stage(check)
    except GatewayError as error:
        return _explained(check, error.status, error.body(), code=error.code or error.error_type,
                          headers={**check.client_headers, **error.headers})
    try:
        return _allowed(app, check)
    except GatewayError as error:  # e.g. the deployment's provider cannot build the request
        return _explained(check, error.status, error.body(), code=error.code or error.error_type,
                          headers=check.client_headers)


def _as_named(name: str) -> Stage:
    """Authenticate as the policy's token `name`: platform teams hold hashes, not their clients' tokens."""

    async def stage(check: Check) -> None:
        record = next((r for r in check.policy.tokens.by_hash.values() if r.name == name), None)
        if record is None:
            raise AuthenticationFailed(f"No token named '{name}' in the policy")
        check.token = record

    return stage


def _allowed(app: web.Application, check: Check) -> Explanation:
    decision = check.decision()
    body = edited_body(check.raw_body)
    for edit in app[EXTENSIONS].request_editors:
        edit(body, decision, check.policy)
    deployment = deployment_candidates(check.policy, decision)[0]
    upstream = build_upstream(provider_for(deployment), decision.endpoint, body, request_id=check.request_id)
    explanation = _explained(check, 200, upstream.body, headers=check.client_headers)
    explanation.provider_url = upstream.url
    explanation.extra = dict(decision.extra)
    return explanation


def _explained(check: Check, status: int, body: bytes, *, code: str | None = None,
               headers: dict[str, str]) -> Explanation:
    route = check.route
    return Explanation(
        policy_version=check.policy.version, policy_source=check.policy.source, request_id=check.request_id,
        status=status, code=code,
        token={"name": check.token.name, "team": check.token.team} if check.token else None,
        model={"key": route.key, "category": route.category, "deployments": list(check.deployments)}
        if route else None,
        stream=check.request.stream if check.request else None,
        trace=dict(check.trace), headers=dict(headers), body=orjson.loads(body),
        requested_model=check.request.model if check.request else None, endpoint=check.kind,
    )
