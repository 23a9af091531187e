"""The client endpoints the gateway serves, as one StrEnum, with their paths and model categories.

The callout chooses the body parser and the model category check by the endpoint kind, the
signed decision carries it to the forwarding path, and logs name it. Paths follow OpenAI's API
reference (`POST /chat/completions`, `POST /embeddings`, `GET /models`, `GET /models/{model}`)
under the gateway's `/api/client/v1` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from sidecar.core.types import JSONDict

API_PREFIX = "/api/client/v1"
CHAT_PATH = API_PREFIX + "/chat/completions"
EMBEDDINGS_PATH = API_PREFIX + "/embeddings"
MODELS_PATH = API_PREFIX + "/models"

LLM_CATEGORY = "llm"
EMBEDDING_CATEGORY = "embedding"


class EndpointKind(StrEnum):
    """What a client request asks for; the value is what logs and the decision spell."""

    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    MODELS = "models"  # the list (`GET /models`) and one model (`GET /models/{model}`)


# The kinds that serve one model category (the hot path reads this map: a property is a call).
CATEGORIES: Mapping[EndpointKind, str] = MappingProxyType(
    {EndpointKind.CHAT: LLM_CATEGORY, EndpointKind.EMBEDDINGS: EMBEDDING_CATEGORY})


class ClientRequest(Protocol):
    """A parsed request body, whatever the endpoint (ChatRequest, EmbeddingsRequest)."""

    @property
    def body(self) -> JSONDict:
        """The whole JSON body as the client sent it (the forwarding path re-reads it from the wire)."""
        ...

    @property
    def model(self) -> str:
        """The model key the client asked for."""
        ...

    @property
    def stream(self) -> bool:
        """Whether the answer is an SSE stream (always False for embeddings)."""
        ...

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for the usage chunk of a stream."""
        ...

    @property
    def request_id(self) -> str | None:
        """The body's `request_id`, which wins over the X-Request-Id header."""
        ...
