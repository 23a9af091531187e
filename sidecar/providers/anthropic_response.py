"""Anthropic answers -> OpenAI shapes: the non-streamed message, usage, stop reasons and errors.

The stream translator reuses the usage, stop-reason and error pieces, so both paths agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.core.errors import ProviderError
from sidecar.core.types import JSONDict
from sidecar.core.usage import is_token_count
from sidecar.providers.base import REJECTION_PREFIX, is_provider_rejection, rejection_code


def finish_reason(stop_reason: Any) -> str | None:
    """Anthropic `stop_reason` -> OpenAI `finish_reason` (None while the message is unfinished)."""
    match stop_reason:
        case None:
            return None
        case "max_tokens" | "model_context_window_exceeded":
            return "length"
        case "tool_use":
            return "tool_calls"
        case "refusal":
            return "content_filter"
        case _:
            # end_turn, stop_sequence, pause_turn and reasons added later all mean "ended normally".
            return "stop"


def json_finish_reason(stop_reason: Any) -> str | None:
    """The finish reason when the forced `response_format` tool answered: its tool_use is the answer."""
    return "stop" if stop_reason == "tool_use" else finish_reason(stop_reason)


def usage(anthropic_usage: Any) -> JSONDict:
    """Anthropic usage -> OpenAI usage; cache reads and writes are prompt tokens too (a count
    Anthropic leaves out is 0). A count that is not a token count (`core.usage.is_token_count`)
    is not summed: it stands in the field it would have gone into, and `total_tokens` is None,
    so the relay refuses this usage as it refuses any provider's and settles by estimate."""
    fields = anthropic_usage if isinstance(anthropic_usage, dict) else {}
    bad = {key: value for key in _COUNTS if (value := fields.get(key)) is not None and not is_token_count(value)}

    def count(key: str) -> int:
        value = fields.get(key)
        return value if is_token_count(value) else 0

    cached = count("cache_read_input_tokens")
    prompt = count("input_tokens") + count("cache_creation_input_tokens") + cached
    completion = count("output_tokens")
    wrong_prompt = next((bad[key] for key in _PROMPT_COUNTS if key in bad), None)
    if bad:
        return {"prompt_tokens": prompt if wrong_prompt is None else wrong_prompt,
                "completion_tokens": bad.get("output_tokens", completion), "total_tokens": None}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        # OpenAI's cached_tokens means "served from cache", i.e. only cache reads; cache writes
        # are billed as (more expensive) fresh input.
        "prompt_tokens_details": {"cached_tokens": cached},
    }


_PROMPT_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_COUNTS = (*_PROMPT_COUNTS, "output_tokens")


def tool_call(block: JSONDict) -> JSONDict:
    """An Anthropic `tool_use` block -> an OpenAI `tool_calls` entry (arguments as a JSON string)."""
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input", {})).decode()},
    }


def completion(payload: JSONDict, *, created: int, json_tool: str | None = None) -> JSONDict:
    """A non-streamed Anthropic message -> an OpenAI `chat.completion`.

    `json_tool`: the forced tool that carried `response_format`; its input is the content (JSON text).
    """
    blocks = [block for block in payload.get("content") or [] if isinstance(block, dict)]
    answer = [b for b in blocks if json_tool is not None and b.get("type") == "tool_use" and b.get("name") == json_tool]
    if answer:
        message: JSONDict = {"role": "assistant", "content": orjson.dumps(answer[0].get("input", {})).decode()}
        return _completion(payload, created, message, json_finish_reason(payload.get("stop_reason")))
    text = "".join(str(block.get("text") or "") for block in blocks if block.get("type") == "text")
    tool_calls = [tool_call(block) for block in blocks if block.get("type") == "tool_use"]
    # OpenAI sends content null (not "") when the assistant only calls tools; thinking blocks
    # have no OpenAI counterpart and are dropped.
    message = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return _completion(payload, created, message, finish_reason(payload.get("stop_reason")))


def _completion(payload: JSONDict, created: int, message: JSONDict, reason: str | None) -> JSONDict:
    return {
        "id": payload.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": payload.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
        "usage": usage(payload.get("usage")),
    }


# --- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ErrorMapping:
    status: int
    error_type: str
    code: str | None
    retryable: bool
    prefix: str = ""


# Used for 401/403/404/402: the client's request was fine, this deployment's configuration is not
# (the one rule of sidecar.providers.base.provider_rejection).
_GATEWAY_SIDE = REJECTION_PREFIX


def _mapping_for_type(anthropic_type: str | None) -> _ErrorMapping | None:
    match anthropic_type:
        case "invalid_request_error":
            return _ErrorMapping(400, "invalid_request_error", None, False)
        case "request_too_large":
            return _ErrorMapping(413, "invalid_request_error", "request_too_large", False)
        case "authentication_error":
            return _ErrorMapping(502, "provider_error", "provider_authentication_failed", True, _GATEWAY_SIDE)
        case "permission_error":
            return _ErrorMapping(502, "provider_error", "provider_permission_denied", True, _GATEWAY_SIDE)
        case "billing_error":
            return _ErrorMapping(502, "provider_error", "provider_billing_error", True, _GATEWAY_SIDE)
        case "not_found_error":
            # The client's model key already resolved, so an upstream 404 means the deployment's
            # upstream model (or base_url) is wrong: a gateway fault another deployment may not have.
            return _ErrorMapping(502, "provider_error", "provider_not_found", True, _GATEWAY_SIDE)
        case "rate_limit_error":
            return _ErrorMapping(429, "rate_limit_exceeded", "provider_rate_limited", True)
        case "overloaded_error":
            return _ErrorMapping(503, "service_unavailable", "provider_overloaded", True)
        case "api_error" | "timeout_error":
            return _ErrorMapping(502, "provider_error", anthropic_type, True)
        case _:
            return None


def _mapping_for_status(status: int | None) -> _ErrorMapping:
    if status is None or status >= 500:
        return _ErrorMapping(502, "provider_error", None, True)
    if status == 429:
        return _ErrorMapping(429, "rate_limit_exceeded", "provider_rate_limited", True)
    if is_provider_rejection(status):
        return _ErrorMapping(502, "provider_error", rejection_code(status), True, _GATEWAY_SIDE)
    return _ErrorMapping(status, "invalid_request_error", None, False)


def provider_error(anthropic_type: str | None, message: str | None, status: int | None) -> ProviderError:
    """The ProviderError for an Anthropic error; `status` is None for a mid-stream `error` event."""
    mapping = _mapping_for_type(anthropic_type) or _mapping_for_status(status)
    text = message or (f"Provider returned HTTP {status}" if status is not None else "Provider stream failed")
    return ProviderError(
        mapping.prefix + text,
        status=mapping.status,
        error_type=mapping.error_type,
        code=mapping.code,
        retryable=mapping.retryable,
    )


def error_fields(payload: Any) -> tuple[str | None, str | None]:
    """(type, message) from a parsed `{"type": "error", "error": {"type", "message"}}`."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None
    kind, message = error.get("type"), error.get("message")
    return (kind if isinstance(kind, str) else None), (message if isinstance(message, str) else None)


def error_from_payload(status: int, payload: bytes) -> ProviderError:
    """An Anthropic HTTP error response (JSON or, from a proxy in between, anything) -> ProviderError."""
    try:
        parsed: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = None
    kind, message = error_fields(parsed)
    if kind is None and message is None:
        # Not Anthropic's error JSON (an HTML page from a load balancer, say): whatever the status,
        # nothing in it is meaningful to the client.
        return ProviderError(
            f"Provider returned HTTP {status} with an unreadable body",
            status=502,
            code="bad_provider_response",
            retryable=status >= 500 or status == 429,
        )
    return provider_error(kind, message, status)
