"""The gateway's error hierarchy: one OpenAI-style JSON shape for every failure.

Every failure anywhere maps to one OpenAI-style JSON shape, `{"error": {"message", "type", "code",
"param"}}` with the contract's status; a subclass only chooses its status, type and code, and may
add fields (the guardrail block adds its findings). Drawn as a tree, with status and `code`:

    GatewayError                      500  api_error
    ├── InvalidRequest                400  (code per instance)
    ├── AuthenticationFailed          401  invalid_api_key
    ├── PermissionDenied              403  model_not_allowed
    ├── NotFound                      404  not_found
    │   └── ModelNotFound             404  model_not_found
    ├── WrongModelCategory            422  model_not_llm / model_not_embedding
    ├── GuardrailBlocked              400  (type guardrail_block; key, action, findings)
    ├── RateLimited                   429  rate_limit_exceeded
    │   └── QuotaExhausted            429  insufficient_quota
    ├── ServiceUnavailable            503  service_unavailable
    │   ├── BreakerOpen               503  circuit_breaker_open
    │   ├── GuardrailUnavailable      503  guardrail_unavailable  (guardrail_key)
    │   └── ShuttingDown              503  gateway_shutting_down
    └── ProviderError                 (status per instance, 502 by default)
        ├── UpstreamTimeout           504  provider_timeout       retryable
        ├── UpstreamUnreachable       502  provider_unreachable   retryable
        └── StreamBroken              502  stream_broken          (after the first byte)

What a transport failure becomes, and what an error says about a provider's health, is the one
failure table in `sidecar.core.failure_table`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


class GatewayError(Exception):
    """Base of every error a client can see; `body()` is its JSON (OpenAI's error object shape)."""

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
        """The object under `"error"`: message, type, code, param (OpenAI's error shape)."""
        return {"message": self.message, "type": self.error_type, "code": self.code, "param": self.param}

    def body(self) -> bytes:
        """The JSON bytes a client receives: `{"error": error_object()}`."""
        return orjson.dumps({"error": self.error_object()})


class InvalidRequest(GatewayError):
    """400: the request body breaks the contract (`param` names the field, `code` what is wrong)."""

    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    """401: missing, malformed, unknown or expired `Authorization: Bearer cgt_…` token."""

    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """403: the token may not use the requested model."""

    status = 403
    error_type = "permission_error"
    default_code = "model_not_allowed"


class NotFound(GatewayError):
    """404: no such route or resource."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    """404: the requested model key is not in the policy."""

    default_code = "model_not_found"


class WrongModelCategory(GatewayError):
    """422: the model exists but its `category` is not the endpoint's (`model_not_llm` on chat,
    `model_not_embedding` on embeddings; see `core.routes.check_category`)."""

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
        """The contract's guardrail error: message, type, guardrail_key, action, findings."""
        return {
            "message": self.message,
            "type": self.error_type,
            "guardrail_key": self.guardrail_key,
            "action": self.action,
            "findings": self.findings,
        }


class RateLimited(GatewayError):
    """429: a rate limit (requests/tokens per minute, concurrency) is full; `Retry-After` says when to retry."""

    status = 429
    error_type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"


class QuotaExhausted(RateLimited):
    """429 with type `insufficient_quota`: a daily/monthly token or spend quota is used up."""

    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class ServiceUnavailable(GatewayError):
    """503: the gateway cannot serve the request now (sent by the callout as the 460 sentinel)."""

    status = 503
    error_type = "service_unavailable"
    default_code = "service_unavailable"


class BreakerOpen(ServiceUnavailable):
    """503: every deployment of the model has an open circuit breaker; `Retry-After` in seconds."""

    error_type = "circuit_breaker_open"
    default_code = "circuit_breaker_open"


class GuardrailUnavailable(ServiceUnavailable):
    """503: a webhook guardrail with `on_error: closed` got no usable answer from its detector.

    `reason` is the call's error kind (`timeout`, `connect`, `http_error`, `invalid_answer`,
    `breaker_open`); `retry_after` is whole seconds for `Retry-After`; `what` is `request` or
    `answer`; `retryable` False (the detector refused this very request with a 4xx) sends
    `x-should-retry: false` instead of `Retry-After`. The error object adds `guardrail_key`.
    """

    default_code = "guardrail_unavailable"

    def __init__(self, guardrail_key: str, reason: str, retry_after: int, what: str = "request", *,
                 retryable: bool = True) -> None:
        # A detector that refused this very request (a 4xx) would refuse it again: no Retry-After,
        # and `x-should-retry: false`, which the OpenAI SDKs obey instead of retrying twice.
        if retryable:
            message, headers = f"Guardrail '{guardrail_key}' could not check the {what} ({reason}); retry later", \
                {"Retry-After": str(retry_after)}
        else:
            message, headers = f"Guardrail '{guardrail_key}' could not check the {what} ({reason}): its " \
                "detector refused it", {"x-should-retry": "false"}
        super().__init__(message, headers=headers)
        self.guardrail_key = guardrail_key

    def error_object(self) -> dict[str, Any]:
        """OpenAI's error object plus `guardrail_key`."""
        return {**super().error_object(), "guardrail_key": self.guardrail_key}


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
    """A provider deadline passed (connect, first byte, idle or total): 504, a fallback may follow."""

    def __init__(self, message: str = "Provider timed out") -> None:
        super().__init__(message, status=504, error_type="timeout", code="provider_timeout", retryable=True)


class UpstreamUnreachable(ProviderError):
    """No usable connection to the provider before its answer: 502, a fallback may follow."""

    def __init__(self, message: str = "Provider unreachable") -> None:
        super().__init__(message, status=502, error_type="provider_error", code="provider_unreachable", retryable=True)


class StreamBroken(ProviderError):
    """The provider's connection broke after the client got its first byte: an in-band error event."""

    def __init__(self, message: str = "Provider connection broke mid-stream") -> None:
        super().__init__(message, code="stream_broken")


class ShuttingDown(ServiceUnavailable):
    """The sidecar got SIGTERM: new requests go elsewhere; streams past the grace period end with it."""

    default_code = "gateway_shutting_down"
