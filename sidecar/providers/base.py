"""The one small interface every provider module implements.

A provider module is pure translation: it turns the client's OpenAI-format request into the
provider's wire request, and the provider's answers back into OpenAI-format dicts. All I/O
(pooled HTTP client, timeouts, SSE framing, relaying to the client) lives in `sidecar.forward.endpoint`,
so adding a provider touches one module here plus the policy schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
