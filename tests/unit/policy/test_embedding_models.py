"""An `embedding` model may only have deployments whose provider type has an embeddings API."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.policy.loader import load_policy
from sidecar.policy.reader import PolicyError

POLICY = """\
providers:
  oa: {type: openai, base_url: 'http://oa.test/v1'}
  az: {type: azure, base_url: 'https://az.test', api_version: '2024-10-21'}
  an: {type: anthropic, base_url: 'https://an.test'}
models:
  embed:
    category: embedding
    deployments:
      - {provider: oa, model: e3}
      - {provider: az, model: e3-az}
"""


def test_openai_and_azure_serve_embeddings(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    route = load_policy(tmp_path).models.routes["embed"]
    assert [d.name for d in route.deployments] == ["oa/e3", "az/e3-az"]


def test_an_anthropic_deployment_of_an_embedding_model_is_a_policy_error(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY + "      - {provider: an, model: claude}\n"
                                          "  chat:\n    deployments: [{provider: an, model: claude}]\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    text = str(caught.value)
    assert "provider type 'anthropic' cannot serve embeddings (use azure or openai)" in text
    assert "policy.yaml:11" in text  # the deployment's own line
    assert text.count("cannot serve embeddings") == 1  # an llm model on Anthropic is fine
