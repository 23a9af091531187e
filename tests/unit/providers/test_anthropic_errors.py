"""Anthropic HTTP error responses -> the ProviderError relayed to the client."""

from __future__ import annotations

import pytest

from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment, ProviderType
from sidecar.providers.anthropic import AnthropicProvider
from tests.unit.providers.support import fixture_bytes

GATEWAY_SIDE = "The provider rejected the gateway's deployment configuration (not your API key): "


def translate(status: int, payload: bytes) -> ProviderError:
    deployment = Deployment(name="d", provider=ProviderType.ANTHROPIC, base_url="https://api.anthropic.com", upstream_model="m")
    return AnthropicProvider(deployment).translate_error(status, payload)


def summary(error: ProviderError) -> tuple[int, dict[str, object], bool]:
    return error.status, error.error_object(), error.retryable


def anthropic_error(error_type: str, message: str) -> bytes:
    return f'{{"type": "error", "error": {{"type": "{error_type}", "message": "{message}"}}}}'.encode()


def test_invalid_request() -> None:
    message = 'messages: roles must alternate between "user" and "assistant", but found multiple "user" roles in a row'
    assert summary(translate(400, fixture_bytes("anthropic_error_invalid_request.json"))) == (
        400,
        {"message": message, "type": "invalid_request_error", "code": None, "param": None},
        False,
    )


def test_authentication_is_a_gateway_fault() -> None:
    assert summary(translate(401, fixture_bytes("anthropic_error_authentication.json"))) == (
        502,
        {"message": GATEWAY_SIDE + "invalid x-api-key", "type": "provider_error", "code": "provider_authentication_failed", "param": None},
        True,
    )


def test_permission_is_a_gateway_fault() -> None:
    error = translate(403, anthropic_error("permission_error", "Your API key does not have permission to use the specified resource."))
    assert summary(error) == (
        502,
        {
            "message": GATEWAY_SIDE + "Your API key does not have permission to use the specified resource.",
            "type": "provider_error",
            "code": "provider_permission_denied",
            "param": None,
        },
        True,
    )


def test_not_found_is_a_gateway_fault() -> None:
    assert summary(translate(404, fixture_bytes("anthropic_error_not_found.json"))) == (
        502,
        {"message": GATEWAY_SIDE + "model: claude-nonexistent", "type": "provider_error", "code": "provider_not_found", "param": None},
        True,
    )


def test_request_too_large() -> None:
    error = translate(413, anthropic_error("request_too_large", "Request exceeds the maximum allowed number of bytes."))
    assert (error.status, error.error_type, error.code, error.retryable) == (413, "invalid_request_error", "request_too_large", False)


def test_rate_limit() -> None:
    assert summary(translate(429, anthropic_error("rate_limit_error", "Number of request tokens has exceeded your rate limit."))) == (
        429,
        {
            "message": "Number of request tokens has exceeded your rate limit.",
            "type": "rate_limit_exceeded",
            "code": "provider_rate_limited",
            "param": None,
        },
        True,
    )


def test_api_error() -> None:
    assert summary(translate(500, anthropic_error("api_error", "Internal server error"))) == (
        502,
        {"message": "Internal server error", "type": "provider_error", "code": "api_error", "param": None},
        True,
    )


def test_overloaded() -> None:
    assert summary(translate(529, fixture_bytes("anthropic_error_overloaded.json"))) == (
        503,
        {"message": "Overloaded", "type": "service_unavailable", "code": "provider_overloaded", "param": None},
        True,
    )


@pytest.mark.parametrize(
    ("status", "expected_status", "retryable"),
    [(400, 400, False), (422, 422, False), (401, 502, True), (429, 429, True), (500, 502, True), (503, 502, True)],
)
def test_unknown_error_type_falls_back_to_status(status: int, expected_status: int, retryable: bool) -> None:
    error = translate(status, anthropic_error("brand_new_error", "Something"))
    assert (error.status, error.retryable) == (expected_status, retryable)
    assert error.message.endswith("Something")


@pytest.mark.parametrize(("status", "retryable"), [(502, True), (429, True), (400, False)])
def test_non_json_garbage_is_502(status: int, retryable: bool) -> None:
    error = translate(status, b"<html><body>502 Bad Gateway</body></html>")
    assert summary(error) == (
        502,
        {"message": f"Provider returned HTTP {status} with an unreadable body", "type": "provider_error", "code": "bad_provider_response", "param": None},
        retryable,
    )


def test_json_without_error_object_is_502() -> None:
    assert translate(500, b'{"detail": "oops"}').code == "bad_provider_response"
