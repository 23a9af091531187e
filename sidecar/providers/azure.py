"""Azure OpenAI (`{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`).

Azure speaks OpenAI's wire format, so only the URL, the auth header and a few error and stream
details differ from `openai_compat`.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson

from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment
from sidecar.core.types import JSONDict, SSEEvent
from sidecar.providers.base import UpstreamRequest
from sidecar.providers.openai_compat import (
    OpenAIStreamTranslator,
    error_from_openai_payload,
    fit_openai_body,
)


class AzureOpenAI:
    def __init__(self, deployment: Deployment) -> None:
        if not deployment.api_version:
            # Azure rejects every call without api-version; failing here names the real cause.
            raise ProviderError(
                f"Azure deployment '{deployment.name}' has no api_version configured",
                code="provider_misconfigured",
                retryable=True,
            )
        self.deployment = deployment
        self._url = self._operation_url("chat/completions")

    def _operation_url(self, operation: str) -> str:
        deployment, version = self.deployment, self.deployment.api_version or ""
        return (f"{deployment.base_url.rstrip('/')}/openai/deployments/{quote(deployment.upstream_model, safe='')}"
                f"/{operation}?api-version={quote(version, safe='')}")

    def build_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        # The deployment in the URL selects the model; a copy keeps the client's body intact for
        # a fallback deployment that needs `model`.
        azure_body = {key: value for key, value in body.items() if key != "model"}
        fit_openai_body(azure_body, self.deployment)
        return UpstreamRequest(self._url, self._headers(request_id), orjson.dumps(azure_body))

    def build_embeddings_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        """`POST {endpoint}/openai/deployments/{deployment}/embeddings?api-version=...`."""
        azure_body = {key: value for key, value in body.items() if key != "model"}
        return UpstreamRequest(self._operation_url("embeddings"), self._headers(request_id), orjson.dumps(azure_body))

    def _headers(self, request_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id, **self.deployment.headers}
        key = self.deployment.credential.value()
        if key:
            headers["api-key"] = key
        return headers

    def translate_response(self, payload: JSONDict) -> JSONDict:
        # Already a chat.completion; Azure's extra content_filter_results keys are harmless.
        return payload

    def translate_error(self, status: int, payload: bytes) -> ProviderError:
        # Content-filter rejections (400, code "content_filter") keep Azure's message and code
        # through the OpenAI mapping, so the client learns why it was refused; a 401/403/404 (key,
        # RBAC, deployment name) is the gateway's fault, a 502 as for every provider.
        return error_from_openai_payload(status, payload)

    def stream_translator(self) -> AzureStreamTranslator:
        return AzureStreamTranslator()


class AzureStreamTranslator:
    """OpenAI's translator, minus Azure's prompt-filter preamble chunk.

    With content filtering on, Azure opens the stream with `{"choices": [], "prompt_filter_results":
    [...], "id": "", "model": "", "object": ""}`: not a well-formed chunk, and with empty choices
    and no usage a client would mistake it for the usage chunk.
    """

    def __init__(self) -> None:
        self._inner = OpenAIStreamTranslator()

    @property
    def done(self) -> bool:
        return self._inner.done

    def feed(self, event: SSEEvent) -> list[JSONDict]:
        return [chunk for chunk in self._inner.feed(event) if chunk.get("choices") or "usage" in chunk]
