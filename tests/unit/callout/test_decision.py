"""DecisionPipeline.decide: what an allowed check carries, and each denial with its request id."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.callout.handoff import DecisionKey
from sidecar.callout.pipeline import Check, DecisionPipeline, Denied, Stage, new_request_id, resolve_request_id
from sidecar.core.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RateLimited,
    WrongModelCategory,
)
from sidecar.core.tokens import hash_token
from sidecar.policy.loader import load_policy
from sidecar.policy.snapshot import Policy

TOKEN = "cgt_unit_decision_token"
NARROW_TOKEN = "cgt_unit_decision_narrow"
AUTH = f"Bearer {TOKEN}"
REQ_ID = re.compile(r"req_[0-9a-f]{24}")


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    (tmp_path / "policy.yaml").write_text(f"""\
providers:
  main: {{type: openai, base_url: 'http://provider.test/v1'}}
  backup: {{type: openai, base_url: 'http://backup.test/v1'}}
models:
  gpt-4:
    deployments:
      - {{provider: main, model: gpt-4-0613}}
      - {{provider: backup, model: gpt-4}}
  claude:
    deployments:
      - {{provider: main, model: claude-up}}
  embed:
    category: embedding
    deployments:
      - {{provider: main, model: embed-up}}
tokens:
  wide:
    sha256: {hash_token(TOKEN)}
    team: blue
  narrow:
    sha256: {hash_token(NARROW_TOKEN)}
    models: [claude]
""")
    return load_policy(tmp_path)


def raw(**fields: Any) -> bytes:
    body: dict[str, Any] = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], **fields}
    return orjson.dumps(body)


async def denied(policy: Policy, body: bytes, authorization: str | None = AUTH,
                 header_id: str | None = "hdr-1", pipeline: DecisionPipeline | None = None) -> Denied:
    with pytest.raises(Denied) as caught:
        await (pipeline or DecisionPipeline()).decide(policy, body, authorization, header_id)
    assert str(caught.value) == caught.value.error.message
    return caught.value


async def test_allowed_check_is_filled(policy: Policy) -> None:
    check = await DecisionPipeline().decide(policy, raw(stream=True, stream_options={"include_usage": True}),
                                            AUTH, "hdr-1")
    assert check.token is not None and check.token.name == "wide"
    assert check.request is not None and check.request.model == "gpt-4"
    assert check.route is not None and check.route.key == "gpt-4"
    assert check.deployments == ("main/gpt-4-0613", "backup/gpt-4")
    assert check.request_id == "hdr-1"
    decision = check.decision()
    assert (decision.request_id, decision.token_name, decision.team) == ("hdr-1", "wide", "blue")
    assert (decision.model_key, decision.deployments) == ("gpt-4", ("main/gpt-4-0613", "backup/gpt-4"))
    assert (decision.stream, decision.client_wants_usage) == (True, True)
    assert decision.policy_version == policy.version
    assert decision.extra == {}


async def test_body_request_id_wins_over_header(policy: Policy) -> None:
    check = await DecisionPipeline().decide(policy, raw(request_id="body-id"), AUTH, "hdr-1")
    assert check.request_id == "body-id"
    assert check.decision().request_id == "body-id"


@pytest.mark.parametrize("header_id", [None, "", "has space", "é", "x" * 129])
async def test_missing_or_invalid_header_id_replaced(policy: Policy, header_id: str | None) -> None:
    check = await DecisionPipeline().decide(policy, raw(), AUTH, header_id)
    assert REQ_ID.fullmatch(check.request_id)


def test_request_id_helpers() -> None:
    assert resolve_request_id("client-id_1") == "client-id_1"
    assert REQ_ID.fullmatch(resolve_request_id("bad id"))
    assert new_request_id() != new_request_id()


async def test_missing_token_denied(policy: Policy) -> None:
    result = await denied(policy, raw(), authorization=None)
    assert isinstance(result.error, AuthenticationFailed)
    assert (result.error.status, result.error.code) == (401, "missing_api_key")
    assert result.check.request_id == "hdr-1"


async def test_unknown_token_denied(policy: Policy) -> None:
    result = await denied(policy, raw(), authorization="Bearer cgt_nobody")
    assert (result.error.status, result.error.code) == (401, "invalid_api_key")
    assert result.check.token is None


async def test_invalid_body_denied_with_header_id(policy: Policy) -> None:
    result = await denied(policy, raw(temperature=5))
    assert isinstance(result.error, InvalidRequest)
    assert (result.error.param, result.error.code) == ("temperature", "invalid_value")
    assert result.check.request_id == "hdr-1"
    assert result.check.token is not None and result.check.token.name == "wide"


async def test_malformed_json_denied_with_generated_id(policy: Policy) -> None:
    result = await denied(policy, b"{nope", header_id=None)
    assert result.error.code == "invalid_json"
    assert REQ_ID.fullmatch(result.check.request_id)


async def test_unknown_model_denied_with_body_id(policy: Policy) -> None:
    result = await denied(policy, raw(model="gpt-5", request_id="body-id"))
    assert isinstance(result.error, ModelNotFound)
    assert (result.error.status, result.error.param, result.error.code) == (404, "model", "model_not_found")
    assert result.error.message == "The model 'gpt-5' does not exist"
    assert result.check.request_id == "body-id"


async def test_non_llm_model_denied(policy: Policy) -> None:
    result = await denied(policy, raw(model="embed"))
    assert isinstance(result.error, WrongModelCategory)
    assert (result.error.status, result.error.code, result.error.param) == (422, "model_not_llm", "model")


async def test_model_not_allowed_for_token_denied(policy: Policy) -> None:
    result = await denied(policy, raw(model="gpt-4", request_id="rid"), authorization=f"Bearer {NARROW_TOKEN}")
    assert isinstance(result.error, PermissionDenied)
    assert (result.error.status, result.error.code, result.error.param) == (403, "model_not_allowed", "model")
    assert result.check.request_id == "rid"
    assert result.check.route is None


async def test_narrow_token_allowed_on_its_model(policy: Policy) -> None:
    check = await DecisionPipeline().decide(policy, raw(model="claude"), f"Bearer {NARROW_TOKEN}", None)
    assert check.deployments == ("main/claude-up",)


async def test_extra_stages_run_after_core_and_can_deny(policy: Policy) -> None:
    seen: list[str] = []

    async def quota(check: Check) -> None:
        assert check.route is not None  # core stages ran first
        seen.append(check.route.key)
        check.client_headers["x-ratelimit-remaining"] = "0"
        raise RateLimited("Slow down", headers={"Retry-After": "3"})

    result = await denied(policy, raw(), pipeline=DecisionPipeline([quota]))
    assert seen == ["gpt-4"]
    assert isinstance(result.error, RateLimited)
    assert result.error.headers == {"Retry-After": "3"}
    assert result.check.client_headers == {"x-ratelimit-remaining": "0"}


MASK: DecisionKey[tuple[str, ...]] = DecisionKey("mask", list, lambda v: tuple(map(str, v)))


async def test_extra_stage_annotations_reach_the_decision(policy: Policy) -> None:
    async def annotate(check: Check) -> None:
        check.put(MASK, ("email",))

    check = await DecisionPipeline([annotate]).decide(policy, raw(), AUTH, None)
    assert check.decision().extra == {"mask": ["email"]}
    assert check.decision().get(MASK) == ("email",)


async def test_the_decision_binds_the_body_digest_and_expires_after_its_ttl(policy: Policy) -> None:
    body = raw()
    check = await DecisionPipeline().decide(policy, body, AUTH, None)
    decision = check.decision(ttl_seconds=7.5, now=1000.0)
    assert decision.body_sha256 == hashlib.sha256(body).hexdigest()
    assert decision.expires_at == 1007.5


async def test_named_stages_run_in_the_declared_order_not_install_order(policy: Policy) -> None:
    seen: list[str] = []

    def stage(name: str) -> Stage:
        async def run(check: Check) -> None:
            seen.append(name)
        return run

    # Installed costly-first; run cheap-first, after the core stages.
    installed = {name: stage(name) for name in ("guardrails_requested", "guardrails_input", "quotas", "breaker",
                                                "drain")}
    await DecisionPipeline(installed).decide(policy, raw(), AUTH, None)
    assert seen == ["drain", "breaker", "quotas", "guardrails_input", "guardrails_requested"]
    with pytest.raises(ValueError, match="not in STAGE_ORDER"):
        DecisionPipeline({"mystery": stage("mystery")})


async def test_a_later_denial_undoes_what_an_earlier_stage_reserved(policy: Policy) -> None:
    undone: list[str] = []

    async def reserve(check: Check) -> None:
        async def release() -> None:
            undone.append("released")
        check.on_deny.append(release)

    async def block(check: Check) -> None:
        raise InvalidRequest("blocked")

    result = await denied(policy, raw(), pipeline=DecisionPipeline({"quotas": reserve, "guardrails_input": block}))
    assert result.error.message == "blocked"
    assert undone == ["released"]
    undone.clear()
    await DecisionPipeline({"quotas": reserve}).decide(policy, raw(), AUTH, None)
    assert undone == []  # allowed: the reservation stands


async def test_non_gateway_errors_are_not_turned_into_denials(policy: Policy) -> None:
    async def broken(check: Check) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await DecisionPipeline([broken]).decide(policy, raw(), AUTH, None)


def test_denied_is_built_from_a_gateway_error(policy: Policy) -> None:
    check = Check(policy, b"", None, "rid")
    error = GatewayError("boom")
    result = Denied(error, check)
    assert (result.error, result.check, str(result)) == (error, check, "boom")
