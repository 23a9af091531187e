"""Per-deployment wire settings (stream usage, the max-tokens field), the one 401/403 rule, the
provider's back-off headers, and Anthropic's JSON output through a forced tool (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.core.routes import Deployment, ProviderType
from sidecar.core.types import SSEEvent
from sidecar.policy.loader import load_policy
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.base import backoff_headers
from sidecar.providers.registry import auto_max_tokens_field, auto_stream_include_usage, provider_for

OPENAI, AZURE, ANTHROPIC = ProviderType.OPENAI, ProviderType.AZURE, ProviderType.ANTHROPIC


def sent(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(provider_for(deployment).build_request(dict(body), request_id="r").body)
    return result


def deployment(provider: ProviderType, **extra: Any) -> Deployment:
    return Deployment(name="d", provider=provider, base_url="http://x", upstream_model="m", api_version="2024-06-01",
                      **extra)


STREAM = {"model": "k", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("provider", [OPENAI, AZURE])
def test_stream_usage_is_asked_for_only_where_the_deployment_takes_it(provider: ProviderType) -> None:
    assert sent(deployment(provider), STREAM)["stream_options"] == {"include_usage": True}
    client_asked = {**STREAM, "stream_options": {"include_usage": True}}
    assert "stream_options" not in sent(deployment(provider, stream_include_usage=False), client_asked)


@pytest.mark.parametrize(("provider", "version", "expected"), [
    (OPENAI, None, True), (ANTHROPIC, None, True), (AZURE, "2024-06-01", False), (AZURE, "2024-08-01-preview", False),
    (AZURE, "2024-09-01-preview", True), (AZURE, "2024-10-21", True), (AZURE, "2025-04-01-preview", True),
])
def test_automatic_stream_usage(provider: ProviderType, version: str | None, expected: bool) -> None:
    assert auto_stream_include_usage(provider, version) is expected


@pytest.mark.parametrize(("provider", "url", "version", "expected"), [
    (OPENAI, "https://api.openai.com/v1", None, "max_completion_tokens"),
    (OPENAI, "http://vllm.internal:8000/v1", None, "max_tokens"),
    (AZURE, "https://r.openai.azure.com", "2024-06-01", "max_tokens"),
    (AZURE, "https://r.openai.azure.com", "2024-10-21", "max_completion_tokens"),
])
def test_automatic_max_tokens_field(provider: ProviderType, url: str, version: str | None, expected: str) -> None:
    assert auto_max_tokens_field(provider, url, version) == expected


def test_a_cap_moves_to_the_field_the_deployment_knows() -> None:
    body = {**STREAM, "max_completion_tokens": 64}
    old = sent(deployment(AZURE, max_tokens_field="max_tokens"), body)
    assert (old["max_tokens"], "max_completion_tokens" in old) == (64, False)
    assert sent(deployment(AZURE), body)["max_completion_tokens"] == 64
    assert sent(deployment(ANTHROPIC), body)["max_tokens"] == 64  # Anthropic's required field


def test_policy_settings_auto_provider_and_deployment(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("""
providers:
  old: {type: azure, base_url: "http://a", api_version: 2024-06-01}
  new: {type: azure, base_url: "http://a", api_version: "2024-10-21"}
  forced: {type: openai, base_url: "http://o/v1", stream_include_usage: false, max_tokens_field: max_completion_tokens}
models:
  m:
    deployments:
      - {provider: old, model: a}
      - {provider: new, model: b}
      - {provider: forced, model: c}
      - {provider: new, model: d, stream_include_usage: false, max_tokens_field: max_tokens}
""")
    deployments = load_policy(tmp_path).models.routes["m"].deployments
    assert [(d.provider, d.stream_include_usage, d.max_tokens_field) for d in deployments] == [
        (AZURE, False, "max_tokens"), (AZURE, True, "max_completion_tokens"),
        (OPENAI, False, "max_completion_tokens"), (AZURE, False, "max_tokens")]


def test_provider_status_codes_and_bad_settings_are_policy_errors(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("""
providers:
  p: {type: openai, base_url: "http://o/v1", stream_include_usage: sometimes, max_tokens_field: tokens}
models:
  m: {deployments: [{provider: p, model: a}]}
""")
    with pytest.raises(Exception) as caught:
        load_policy(tmp_path)
    assert "providers.p.stream_include_usage: must be auto, true or false" in str(caught.value)
    assert "providers.p.max_tokens_field: must be one of auto, max_completion_tokens, max_tokens" in str(caught.value)


@pytest.mark.parametrize(("provider", "status", "body", "code"), [
    (OPENAI, 401, b'{"error": {"message": "Incorrect API key provided"}}', "provider_authentication_failed"),
    (OPENAI, 403, b'{"error": {"message": "Project not allowed"}}', "provider_permission_denied"),
    (AZURE, 403, b'{"error": {"code": "PermissionDenied", "message": "RBAC"}}', "provider_permission_denied"),
    (ANTHROPIC, 401, b'{"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}',
     "provider_authentication_failed"),
    (ANTHROPIC, 403, b'{"type": "error", "error": {"type": "permission_error", "message": "no"}}',
     "provider_permission_denied"),
])
def test_one_rule_for_a_providers_own_401_and_403(provider: ProviderType, status: int, body: bytes,
                                                  code: str) -> None:
    error = provider_for(deployment(provider)).translate_error(status, body)
    assert (error.status, error.error_type, error.code, error.retryable) == (502, "provider_error", code, True)
    assert error.message.startswith("The provider rejected the gateway's deployment configuration (not your API key): ")


def test_backoff_headers_are_relayed_with_429_and_503_only() -> None:
    headers = {"Retry-After": "17", "retry-after-ms": "17000", "x-ratelimit-remaining-requests": "0",
               "anthropic-ratelimit-requests-remaining": "0", "content-type": "application/json", "x-other": "1"}
    expected = {"Retry-After": "17", "retry-after-ms": "17000", "x-ratelimit-remaining-requests": "0",
                "anthropic-ratelimit-requests-remaining": "0"}
    assert backoff_headers(429, headers) == expected
    assert backoff_headers(503, headers) == expected
    assert backoff_headers(400, headers) == {}
    taken = {"x-ratelimit-remaining-requests"}  # the gateway's own quota sends it already
    assert "x-ratelimit-remaining-requests" not in backoff_headers(429, headers, taken)


SCHEMA_REQUEST = {"model": "k", "messages": [{"role": "user", "content": "capital of France?"}],
                  "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {
                      "type": "object", "properties": {"city": {"type": "string"}}}}}}


def test_anthropic_json_answer_is_the_forced_tools_input() -> None:
    provider = AnthropicProvider(deployment(ANTHROPIC), clock=lambda: 1.0)
    provider.build_request(dict(SCHEMA_REQUEST), request_id="r")
    completion = provider.translate_response({
        "id": "msg_1", "model": "c", "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 6},
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "city", "input": {"city": "Paris"}}]})
    assert completion["choices"] == [{"index": 0, "message": {"role": "assistant", "content": '{"city":"Paris"}'},
                                      "finish_reason": "stop"}]


def test_anthropic_json_stream_relays_the_tool_input_as_content() -> None:
    provider = AnthropicProvider(deployment(ANTHROPIC), clock=lambda: 1.0)
    provider.build_request({**SCHEMA_REQUEST, "stream": True}, request_id="r")
    translator = provider.stream_translator()
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "city",
                                                                      "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"city"'}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ': "Paris"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 6}},
        {"type": "message_stop"},
    ]
    chunks = [c for e in events for c in translator.feed(SSEEvent(orjson.dumps(e).decode()))]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == '{"city": "Paris"}'
    assert not any("tool_calls" in d for d in deltas)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
