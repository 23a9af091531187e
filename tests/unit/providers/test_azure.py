"""Azure OpenAI: URL, auth header, body, pass-through responses, stream preamble, errors."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from sidecar.core.credentials import Credential
from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment, ProviderType
from sidecar.core.types import SSEEvent
from sidecar.providers.azure import AzureOpenAI
from tests.unit.providers.support import (
    feed_all,
    fixture_bytes,
    fixture_json,
    sse_events,
)

AZURE = Deployment(
    name="gpt4o-eastus",
    provider=ProviderType.AZURE,
    base_url="https://myres.openai.azure.com/",
    upstream_model="gpt-4o-prod",
    credential=Credential(env="TEST_AZURE_KEY"),
    api_version="2024-10-21",
    headers={"x-ms-useragent": "sidecar"},
)


def deployment(**overrides: Any) -> Deployment:
    return replace(AZURE, **overrides)


def test_url_headers_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-secret")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True, "stream_options": {"include_usage": True}}
    request = AzureOpenAI(deployment()).build_request(body, request_id="req-9")
    assert request.url == "https://myres.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert dict(request.headers) == {
        "Content-Type": "application/json",
        "X-Request-Id": "req-9",
        "x-ms-useragent": "sidecar",
        "api-key": "azure-secret",
    }
    assert orjson.loads(request.body) == {
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # The client's body stays intact for a fallback deployment.
    assert body["model"] == "gpt-4o"


def test_no_authorization_header_and_no_key_without_credential() -> None:
    request = AzureOpenAI(deployment(credential=Credential())).build_request({"messages": []}, request_id="r")
    assert "api-key" not in request.headers
    assert "Authorization" not in request.headers


def test_url_parts_are_quoted() -> None:
    provider = AzureOpenAI(deployment(upstream_model="my deployment", api_version="2025-01-01-preview"))
    request = provider.build_request({"messages": []}, request_id="r")
    assert request.url == (
        "https://myres.openai.azure.com/openai/deployments/my%20deployment/chat/completions?api-version=2025-01-01-preview"
    )


def test_missing_api_version_is_a_configuration_error() -> None:
    with pytest.raises(ProviderError) as caught:
        AzureOpenAI(deployment(api_version=None))
    assert (caught.value.status, caught.value.code) == (502, "provider_misconfigured")
    assert "gpt4o-eastus" in caught.value.message


def test_response_passes_through() -> None:
    payload = fixture_json("azure_chat_completion.json")
    assert AzureOpenAI(deployment()).translate_response(payload) == fixture_json("azure_chat_completion.json")


def test_stream_drops_the_prompt_filter_preamble() -> None:
    stream = AzureOpenAI(deployment()).stream_translator()
    events = sse_events("azure_stream.sse")
    chunks = [chunk for _, chunk in feed_all(stream, events)]
    assert chunks == [orjson.loads(event.data) for event in events[1:-1]]
    assert [chunk["choices"][0]["delta"] for chunk in chunks[:3]] == [
        {"content": "", "refusal": None, "role": "assistant"},
        {"content": "Hello"},
        {},
    ]
    assert chunks[-1]["usage"] == {"completion_tokens": 1, "prompt_tokens": 9, "total_tokens": 10}
    assert stream.done


def test_stream_error_event_raises() -> None:
    stream = AzureOpenAI(deployment()).stream_translator()
    with pytest.raises(ProviderError) as caught:
        stream.feed(SSEEvent(data='{"error": {"message": "The server had an error", "type": "server_error"}}'))
    assert (caught.value.status, caught.value.message, caught.value.retryable) == (502, "The server had an error", True)


def test_content_filter_error_keeps_its_message() -> None:
    error = AzureOpenAI(deployment()).translate_error(400, fixture_bytes("azure_error_content_filter.json"))
    expected_message = fixture_json("azure_error_content_filter.json")["error"]["message"]
    assert (error.status, error.error_object(), error.retryable) == (
        400,
        {"message": expected_message, "type": "invalid_request_error", "code": "content_filter", "param": "prompt"},
        False,
    )


@pytest.mark.parametrize(
    ("status", "fixture", "code"),
    [(401, "azure_error_unauthorized.json", "provider_authentication_failed"),
     (404, "azure_error_deployment_not_found.json", "provider_not_found")],
)
def test_credential_and_deployment_errors_are_gateway_faults(status: int, fixture: str, code: str) -> None:
    error = AzureOpenAI(deployment()).translate_error(status, fixture_bytes(fixture))
    message = fixture_json(fixture)["error"]["message"]
    assert (error.status, error.error_object(), error.retryable) == (
        502,
        {
            "message": f"The provider rejected the gateway's deployment configuration (not your API key): {message}",
            "type": "provider_error",
            "code": code,
            "param": None,
        },
        True,
    )


def test_throttling_and_server_errors() -> None:
    provider = AzureOpenAI(deployment())
    throttled = provider.translate_error(429, b'{"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have exceeded call rate limit."}}')
    assert (throttled.status, throttled.retryable) == (429, True)
    failed = provider.translate_error(500, b"upstream connect error")
    assert (failed.status, failed.message, failed.retryable) == (502, "Provider returned HTTP 500", True)
