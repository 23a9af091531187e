"""The endpoint kind in the callout: parser, model category and stages per kind; the decision carries it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.callout.handoff import decode, encode
from sidecar.callout.pipeline import Check, DecisionPipeline, Denied, per_kind
from sidecar.core.endpoints import EndpointKind
from sidecar.core.tokens import hash_token
from sidecar.policy.loader import load_policy
from sidecar.policy.snapshot import Policy

TOKEN = "cgt_unit_kinds_wide"
NARROW = "cgt_unit_kinds_narrow"
LLM_ONLY = "cgt_unit_kinds_llm_only"


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    (tmp_path / "policy.yaml").write_text(f"""\
providers:
  main: {{type: openai, base_url: 'http://provider.test/v1'}}
models:
  gpt-4:
    deployments: [{{provider: main, model: gpt-4-up}}]
  embed:
    category: embedding
    deployments: [{{provider: main, model: embed-up}}]
  rerank:
    category: rerank
    deployments: [{{provider: main, model: rerank-up}}]
tokens:
  wide: {{sha256: {hash_token(TOKEN)}, team: blue}}
  narrow: {{sha256: {hash_token(NARROW)}, models: [embed]}}
  llm-only: {{sha256: {hash_token(LLM_ONLY)}, models: [gpt-4]}}
""")
    return load_policy(tmp_path)


def embeddings(**fields: Any) -> bytes:
    return orjson.dumps({"model": "embed", "input": ["hello"], **fields})


async def denial(policy: Policy, body: bytes, kind: EndpointKind, token: str = TOKEN,
                 path_model: str | None = None) -> Denied:
    with pytest.raises(Denied) as caught:
        await DecisionPipeline().decide(policy, body, f"Bearer {token}", None, kind=kind, path_model=path_model)
    return caught.value


async def test_embeddings_allowed_and_decision_says_so(policy: Policy) -> None:
    check = await DecisionPipeline().decide(policy, embeddings(request_id="emb-1"), f"Bearer {TOKEN}", None,
                                            kind=EndpointKind.EMBEDDINGS)
    decision = check.decision()
    assert (decision.endpoint, decision.model_key, decision.deployments, decision.stream) == (
        EndpointKind.EMBEDDINGS, "embed", ("main/embed-up",), False)
    assert decision.request_id == "emb-1"
    again = decode(encode(decision, b"k" * 32), b"k" * 32)
    assert again == decision and again.endpoint is EndpointKind.EMBEDDINGS


async def test_an_llm_model_on_embeddings_is_422_naming_the_category(policy: Policy) -> None:
    error = (await denial(policy, embeddings(model="gpt-4"), EndpointKind.EMBEDDINGS)).error
    assert (error.status, error.code, error.param) == (422, "model_not_embedding", "model")
    assert "'gpt-4' is a 'llm' model" in error.message and "category 'embedding'" in error.message


async def test_an_embedding_model_on_chat_is_422(policy: Policy) -> None:
    body = orjson.dumps({"model": "embed", "messages": [{"role": "user", "content": "hi"}]})
    error = (await denial(policy, body, EndpointKind.CHAT)).error
    assert (error.status, error.code) == (422, "model_not_llm")


async def test_the_chat_parser_is_not_used_for_embeddings(policy: Policy) -> None:
    error = (await denial(policy, embeddings(input=[]), EndpointKind.EMBEDDINGS)).error
    assert (error.status, error.param) == (400, "input")
    error = (await denial(policy, embeddings(), EndpointKind.CHAT)).error
    assert (error.status, error.param) == (400, "messages")


@pytest.mark.parametrize(("kind", "body"), [
    (EndpointKind.CHAT, orjson.dumps({"model": "embed", "messages": [{"role": "user", "content": "hi"}]})),
    (EndpointKind.CHAT, orjson.dumps({"model": "rerank", "messages": [{"role": "user", "content": "hi"}]})),
    (EndpointKind.EMBEDDINGS, embeddings(model="embed")),
    (EndpointKind.EMBEDDINGS, embeddings(model="gpt-4")),
])
async def test_outside_the_allow_list_is_403_whatever_the_category(policy: Policy, kind: EndpointKind,
                                                                    body: bytes) -> None:
    error = (await denial(policy, body, kind, token=LLM_ONLY if b"gpt-4" not in body else NARROW)).error
    assert (error.status, error.code) == (403, "model_not_allowed")


async def test_unknown_model_is_404_on_embeddings(policy: Policy) -> None:
    error = (await denial(policy, embeddings(model="nope"), EndpointKind.EMBEDDINGS)).error
    assert (error.status, error.code) == (404, "model_not_found")


async def test_model_list_runs_only_the_token_check(policy: Policy) -> None:
    ran: list[str] = []

    async def extra(check: Check) -> None:
        ran.append("extra")

    check = await DecisionPipeline([extra]).decide(policy, b"", f"Bearer {TOKEN}", None, kind=EndpointKind.MODELS)
    decision = check.decision()
    assert (decision.endpoint, decision.model_key, decision.deployments, ran) == (EndpointKind.MODELS, "", (), [])


async def test_one_model_allowed(policy: Policy) -> None:
    check = await DecisionPipeline().decide(policy, b"", f"Bearer {NARROW}", None, kind=EndpointKind.MODELS,
                                            path_model="embed")
    assert check.decision().model_key == "embed"


@pytest.mark.parametrize(("token", "model"), [(NARROW, "gpt-4"), (NARROW, "nope"), (TOKEN, "nope"), (TOKEN, "")])
async def test_unknown_or_disallowed_model_is_the_same_404(policy: Policy, token: str, model: str) -> None:
    error = (await denial(policy, b"", EndpointKind.MODELS, token=token, path_model=model)).error
    assert (error.status, error.code, error.message) == (404, "model_not_found", f"The model '{model}' does not exist")


async def test_model_list_without_a_token_is_401(policy: Policy) -> None:
    with pytest.raises(Denied) as caught:
        await DecisionPipeline().decide(policy, b"", None, None, kind=EndpointKind.MODELS)
    assert caught.value.error.status == 401


async def test_per_kind_runs_the_kinds_own_stage(policy: Policy) -> None:
    seen: list[str] = []

    async def chat(check: Check) -> None:
        seen.append("chat")

    stage = per_kind({EndpointKind.CHAT: chat})
    await stage(Check(policy, b"", None, "r", kind=EndpointKind.CHAT))
    await stage(Check(policy, b"", None, "r", kind=EndpointKind.EMBEDDINGS))
    assert seen == ["chat"]

