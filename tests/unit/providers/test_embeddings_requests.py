"""build_embeddings_request per provider type: OpenAI-compatible and Azure URLs, auth, body; Anthropic refuses."""

from __future__ import annotations

import orjson
import pytest

from sidecar.core.credentials import Credential
from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment, ProviderType
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.azure import AzureOpenAI
from sidecar.providers.base import build_upstream
from sidecar.providers.openai_compat import OpenAICompatible
from sidecar.providers.registry import EMBEDDING_PROVIDER_TYPES, PROVIDER_TYPES

BODY = {"model": "embed", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 256}


def test_openai_compatible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", "sk-1")
    deployment = Deployment("main/e3", ProviderType.OPENAI, "http://provider.test/v1/", "text-embedding-3-small",
                            credential=Credential(env="TEST_EMBED_KEY"), headers={"x-org": "o"})
    upstream = OpenAICompatible(deployment).build_embeddings_request(dict(BODY), request_id="req_1")
    assert upstream.url == "http://provider.test/v1/embeddings"
    assert orjson.loads(upstream.body) == {**BODY, "model": "text-embedding-3-small"}
    assert upstream.headers["Authorization"] == "Bearer sk-1"
    assert (upstream.headers["X-Request-Id"], upstream.headers["x-org"]) == ("req_1", "o")


def test_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", "az-1")
    deployment = Deployment("az/e3", ProviderType.AZURE, "https://res.openai.azure.com/", "embed prod",
                            credential=Credential(env="TEST_EMBED_KEY"), api_version="2024-10-21")
    upstream = AzureOpenAI(deployment).build_embeddings_request(dict(BODY), request_id="req_2")
    assert upstream.url == ("https://res.openai.azure.com/openai/deployments/embed%20prod/embeddings"
                            "?api-version=2024-10-21")
    assert orjson.loads(upstream.body) == {k: v for k, v in BODY.items() if k != "model"}
    assert upstream.headers["api-key"] == "az-1"
    # The chat URL is unchanged beside it.
    chat = AzureOpenAI(deployment).build_request({"model": "m", "messages": []}, request_id="r")
    assert chat.url.endswith("/openai/deployments/embed%20prod/chat/completions?api-version=2024-10-21")


def test_anthropic_cannot_serve_embeddings() -> None:
    deployment = Deployment("an/claude", ProviderType.ANTHROPIC, "https://api.anthropic.test", "claude")
    with pytest.raises(ProviderError) as caught:
        AnthropicProvider(deployment).build_embeddings_request(dict(BODY), request_id="r")
    assert (caught.value.status, caught.value.code) == (502, "endpoint_not_supported")
    assert frozenset(PROVIDER_TYPES) - {"anthropic"} == EMBEDDING_PROVIDER_TYPES


def test_build_upstream_chooses_by_endpoint() -> None:
    provider = OpenAICompatible(Deployment("main/m", ProviderType.OPENAI, "http://p.test/v1", "up"))
    assert build_upstream(provider, EndpointKind.EMBEDDINGS, dict(BODY), request_id="r").url.endswith("/embeddings")
    chat = build_upstream(provider, EndpointKind.CHAT, {"messages": []}, request_id="r")
    assert chat.url.endswith("/chat/completions")
