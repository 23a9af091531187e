"""The one small interface every provider module implements.

A provider module is pure translation: it turns the client's OpenAI-format request into the
provider's wire request, and the provider's answers back into OpenAI-format dicts. All I/O
(pooled HTTP client, timeouts, SSE framing, relaying to the client) lives in `sidecar.forward.endpoint`,
so adding a provider touches one module here plus the policy schema.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import ProviderError
from sidecar.core.types import JSONDict, SSEEvent


@dataclass(frozen=True)
class UpstreamRequest:
    """What to send to the provider: an HTTP POST."""

    url: str
    headers: Mapping[str, str]
    body: bytes

    def __post_init__(self) -> None:
        # orjson.dumps returns bytes with kilobytes of spare capacity (4 KB for a tiny body, 8 KB
        # for 1 KB); this body lives as long as the exchange, a whole stream, so keep an exact-size
        # copy. `make bench` measured the sidecar's RSS with 1,000 open streams before and after.
        object.__setattr__(self, "body", bytes(memoryview(self.body)))


class StreamTranslator(Protocol):
    """Turns one provider stream into OpenAI `chat.completion.chunk` dicts, event by event.

    Chunks carry no `model`/`id` rewriting: the forwarding path stamps those. A chunk with
    a `usage` key and empty `choices` is the usage chunk (OpenAI's `include_usage` shape).
    """

    def feed(self, event: SSEEvent) -> list[JSONDict]:
        """Translate one event; raise ProviderError for an error event from the provider."""
        ...

    @property
    def done(self) -> bool:
        """True once the provider signalled the end of the stream (`[DONE]`, `message_stop`)."""
        ...


class Provider(Protocol):
    """One provider deployment's translation between OpenAI's format and the provider's."""

    def build_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        """`body` is the client's OpenAI chat request after policy edits (masking, stream options).

        The provider sets its own upstream model name; `request_id` is sent as X-Request-Id.
        """
        ...

    def build_embeddings_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        """`body` is the client's OpenAI embeddings request; the answer is OpenAI's embeddings list.

        Raises ProviderError (502 `endpoint_not_supported`) for a provider without embeddings; the
        policy loader refuses such deployments for `embedding` models, so that is a safety net.
        """
        ...

    def translate_response(self, payload: JSONDict) -> JSONDict:
        """A non-streamed provider response -> an OpenAI `chat.completion` dict (with `usage`)."""
        ...

    def translate_error(self, status: int, payload: bytes) -> ProviderError:
        """A provider error response -> the OpenAI-style error to relay (message kept, status mapped)."""
        ...

    def stream_translator(self) -> StreamTranslator:
        """A fresh translator for one streamed response."""
        ...


def build_upstream(provider: Provider, endpoint: EndpointKind, body: JSONDict, *, request_id: str) -> UpstreamRequest:
    """The provider's request for the client's endpoint (chat completions or embeddings)."""
    if endpoint is EndpointKind.EMBEDDINGS:
        return provider.build_embeddings_request(body, request_id=request_id)
    return provider.build_request(body, request_id=request_id)
# A provider's own 401/402/403/404 is about the gateway's deployment (its key, RBAC, billing,
# upstream model or URL), never the client's request: the client's token and model key already
# passed the callout. Relayed as such, a 401 would look like the client's own bad token.
_REJECTION_CODES: Mapping[int, str] = MappingProxyType({
    401: "provider_authentication_failed",
    402: "provider_billing_error",
    403: "provider_permission_denied",
    404: "provider_not_found",
})
REJECTION_PREFIX = "The provider rejected the gateway's deployment configuration (not your API key): "


def is_provider_rejection(status: int) -> bool:
    """Whether a provider status is about the gateway's deployment rather than the request."""
    return status in _REJECTION_CODES


def rejection_code(status: int) -> str:
    """The gateway's error code for a provider's own 401/402/403/404."""
    return _REJECTION_CODES.get(status, "provider_rejected")


def provider_rejection(status: int, message: str, code: str | None = None) -> ProviderError:
    """The one rule for a provider's own 401/402/403/404, in every provider module: a 502
    `provider_error` whose message names the provider's rejection; retryable, because another
    deployment (another key, another resource) may well work."""
    return ProviderError(
        REJECTION_PREFIX + message,
        status=502,
        error_type="provider_error",
        code=code or rejection_code(status),
        retryable=True,
    )


# What a client's back-off needs from a provider's 429 or 503: OpenAI's and Azure's `x-ratelimit-*`,
# Anthropic's `anthropic-ratelimit-*`, and `Retry-After` (RFC 9110 10.2.3; `retry-after-ms` is
# OpenAI's and Azure's finer variant, which the OpenAI SDKs read first).
_RATE_LIMIT_HEADERS = ("retry-after", "retry-after-ms")
_RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_BACKOFF_STATUSES = (429, 503)


def backoff_headers(status: int, headers: Mapping[str, str], taken: Collection[str] = ()) -> dict[str, str]:
    """The provider's rate-limit and Retry-After headers to relay with an error of `status` (the
    status the client gets); empty for other statuses. `taken`: lower-case names the gateway already
    sends (its own quotas' x-ratelimit-*), which the provider's must not duplicate."""
    if status not in _BACKOFF_STATUSES:
        return {}
    return {name: value for name, value in headers.items()
            if ((lower := name.lower()) in _RATE_LIMIT_HEADERS or lower.startswith(_RATE_LIMIT_PREFIXES))
            and lower not in taken}


def error_from_answer(provider: Provider, status: int, payload: bytes, headers: Mapping[str, str],
                      taken: Collection[str] = ()) -> ProviderError:
    """A provider's error answer as the client gets it: the provider module's translation, with the
    provider's Retry-After and rate-limit headers (but those in `taken`) when it is a 429 or 503."""
    error = provider.translate_error(status, payload)
    error.headers.update(backoff_headers(error.status, headers, taken))
    return error
