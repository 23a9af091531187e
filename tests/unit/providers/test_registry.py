"""Each provider type is reachable from a Deployment through the registry."""

from __future__ import annotations

import orjson
import pytest

from sidecar.core.credentials import Credential
from sidecar.core.routes import Deployment, ProviderType
from sidecar.core.types import SSEEvent
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.azure import AzureOpenAI
from sidecar.providers.openai_compat import OpenAICompatible
from sidecar.providers.registry import provider_for
from tests.unit.providers.support import fixture_json, sse_events


def test_registry_knows_all_provider_types() -> None:
    for name, cls in (("openai", OpenAICompatible), ("azure", AzureOpenAI), ("anthropic", AnthropicProvider)):
        deployment = Deployment(name=name, provider=ProviderType(name), base_url="http://x", upstream_model="m", api_version="2024-10-21")
        assert isinstance(provider_for(deployment), cls)


def test_anthropic_end_to_end_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-ant")
    provider = provider_for(
        Deployment(
            name="claude",
            provider=ProviderType.ANTHROPIC,
            base_url="https://api.anthropic.com",
            upstream_model="claude-sonnet-4-20250514",
            credential=Credential(env="TEST_KEY"),
            default_max_tokens=512,
        )
    )
    request = provider.build_request({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}, request_id="r1")
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant"
    assert orjson.loads(request.body)["max_tokens"] == 512
    completion = provider.translate_response(fixture_json("anthropic_message_text.json"))
    assert completion["choices"][0]["message"]["content"] == "Hi! My name is Claude. How can I help?"
    stream = provider.stream_translator()
    chunks = [chunk for event in sse_events("anthropic_stream_text_and_tools.sse") for chunk in stream.feed(event)]
    assert len(chunks) == 10
    assert stream.done
    assert provider.translate_error(529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}').status == 503


def test_azure_end_to_end_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "az")
    provider = provider_for(
        Deployment(
            name="gpt",
            provider=ProviderType.AZURE,
            base_url="https://myres.openai.azure.com",
            upstream_model="gpt-4o-prod",
            credential=Credential(env="TEST_KEY"),
            api_version="2024-10-21",
        )
    )
    request = provider.build_request({"model": "gpt-4o", "messages": []}, request_id="r2")
    assert request.url == "https://myres.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == "az"
    assert provider.translate_response(fixture_json("azure_chat_completion.json"))["object"] == "chat.completion"
    stream = provider.stream_translator()
    assert stream.feed(SSEEvent(data="[DONE]")) == []
    assert stream.done
    assert provider.translate_error(400, b'{"error": {"code": "content_filter", "message": "filtered"}}').message == "filtered"
