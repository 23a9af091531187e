"""The forwarding side of embeddings (answer shape, usage) and of the model list (from the policy)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sidecar.callout.handoff import Decision
from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import ModelNotFound, ProviderError
from sidecar.core.tokens import hash_token
from sidecar.core.types import Usage
from sidecar.forward.embeddings import embeddings_answer
from sidecar.forward.models import model_answer
from sidecar.forward.usage import ProviderUsage
from sidecar.policy.loader import load_policy
from sidecar.policy.snapshot import Policy


@pytest.mark.parametrize("payload", [
    b"not json", b"[]", b'{"object": "list"}', b'{"data": {}}', b'{"data": [1]}', b'{"data": [{"embedding": 3}]}'])
def test_malformed_answers_are_the_providers_fault(payload: bytes) -> None:
    with pytest.raises(ProviderError) as caught:
        embeddings_answer(payload)
    assert (caught.value.status, caught.value.code) == (502, "bad_provider_response")


def test_float_and_base64_answers_pass() -> None:
    answer = embeddings_answer(orjson.dumps({"data": [{"embedding": [0.1]}, {"embedding": "AAAA"}], "x": 1}))
    assert answer["x"] == 1


@pytest.mark.parametrize(("usage", "expected"), [
    ({"prompt_tokens": 7, "total_tokens": 7}, Usage(7, 0)), ({"total_tokens": 7}, None), (None, None),
    ({"prompt_tokens": True}, None), ({"prompt_tokens": -1}, None)])
def test_usage_is_prompt_tokens(usage: object, expected: Usage | None) -> None:
    assert ProviderUsage("req_1", "d").read(usage, completion=False) == expected


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    (tmp_path / "policy.yaml").write_text(f"""\
providers:
  main: {{type: openai, base_url: 'http://provider.test/v1'}}
models:
  gpt-4: {{deployments: [{{provider: main, model: g}}]}}
  embed: {{category: embedding, deployments: [{{provider: main, model: e}}]}}
  other: {{deployments: [{{provider: main, model: o}}]}}
tokens:
  wide: {{sha256: {hash_token("cgt_wide_models")}}}
  narrow: {{sha256: {hash_token("cgt_narrow_models")}, models: [embed, gpt-4]}}
""")
    return load_policy(tmp_path)


def decision(token: str, model: str = "") -> Decision:
    return Decision("req_1", token, None, model, (), False, False, "v", endpoint=EndpointKind.MODELS)


def test_the_list_holds_the_allow_list_in_policy_order(policy: Policy) -> None:
    assert model_answer(policy, decision("narrow")) == {"object": "list", "data": [
        {"id": "gpt-4", "object": "model", "created": 0, "owned_by": "gateway", "category": "llm"},
        {"id": "embed", "object": "model", "created": 0, "owned_by": "gateway", "category": "embedding"}]}
    assert [m["id"] for m in model_answer(policy, decision("wide"))["data"]] == ["gpt-4", "embed", "other"]


def test_a_token_gone_from_the_policy_lists_nothing(policy: Policy) -> None:
    assert model_answer(policy, decision("removed"))["data"] == []


def test_one_model(policy: Policy) -> None:
    assert model_answer(policy, decision("narrow", "embed"))["id"] == "embed"
    with pytest.raises(ModelNotFound):
        model_answer(policy, decision("narrow", "gone"))
