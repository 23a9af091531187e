"""The gateway's error hierarchy: every failure anywhere maps to one OpenAI-style JSON shape.

`{"error": {"message", "type", "code", "param"}}` with the contract's status; a subclass only
chooses its status, type and code, and may add fields (the guardrail block adds its findings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


class GatewayError(Exception):
    status: int = 500
    error_type: str = "api_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})

    def error_object(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.error_type, "code": self.code, "param": self.param}

    def body(self) -> bytes:
        return orjson.dumps({"error": self.error_object()})


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    error_type = "permission_error"
    default_code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class WrongModelCategory(GatewayError):
    status = 422
    error_type = "invalid_request_error"
    default_code = "model_not_llm"


class GuardrailBlocked(GatewayError):
    """The contract's exact guardrail body: no code/param, but the key, action and findings."""

    status = 400
    error_type = "guardrail_block"

    def __init__(self, guardrail_key: str, action: str, findings: list[dict[str, Any]]) -> None:
        super().__init__("Content blocked by guardrail")
        self.guardrail_key = guardrail_key
        self.action = action
        self.findings = findings

    def error_object(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "type": self.error_type,
            "guardrail_key": self.guardrail_key,
            "action": self.action,
            "findings": self.findings,
        }


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"


class QuotaExhausted(RateLimited):
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class ServiceUnavailable(GatewayError):
    status = 503
    error_type = "service_unavailable"
    default_code = "service_unavailable"


class BreakerOpen(ServiceUnavailable):
    error_type = "circuit_breaker_open"
    default_code = "circuit_breaker_open"


class ProviderError(GatewayError):
    """A provider answered with an error, or could not be used; `status` is chosen per instance."""

    error_type = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.status = status
        if error_type is not None:
            self.error_type = error_type
        # Whether a fallback deployment may be tried (connect errors, 5xx, 429) before the first byte.
        self.retryable = retryable


class UpstreamTimeout(ProviderError):
    def __init__(self, message: str = "Provider timed out") -> None:
        super().__init__(message, status=504, error_type="timeout", code="provider_timeout", retryable=True)


class UpstreamUnreachable(ProviderError):
    def __init__(self, message: str = "Provider unreachable") -> None:
        super().__init__(message, status=502, error_type="provider_error", code="provider_unreachable", retryable=True)


class ShuttingDown(ServiceUnavailable):
    """The sidecar got SIGTERM: new requests go elsewhere; streams past the grace period end with it."""

    default_code = "gateway_shutting_down"
