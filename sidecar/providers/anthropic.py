"""Anthropic Messages API (`POST {base_url}/v1/messages`).

The translation itself lives in `anthropic_request`, `anthropic_response` and `anthropic_stream`;
this module is the Provider that ties them to one deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment
from sidecar.core.types import JSONDict
from sidecar.providers.anthropic_fields import json_tool
from sidecar.providers.anthropic_request import build_body
from sidecar.providers.anthropic_response import completion, error_from_payload
from sidecar.providers.anthropic_stream import AnthropicStreamTranslator
from sidecar.providers.base import UpstreamRequest

# The Messages API version this translation is written against; a deployment's extra headers may
# override it (or add `anthropic-beta`) without a code change.
ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, deployment: Deployment, *, clock: Callable[[], float] = time.time) -> None:
        self.deployment = deployment
        self._url = deployment.base_url.rstrip("/") + "/v1/messages"
        # Anthropic's answers carry no timestamp, so `created` comes from here; injectable for tests.
        self._clock = clock
        # The forced tool that carries `response_format` (its input is the answer's content); set by
        # build_request, read back by the translations of this exchange's answer.
        self._json_tool: str | None = None

    def build_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        anthropic_body = build_body(
            body, model=self.deployment.upstream_model, default_max_tokens=self.deployment.default_max_tokens
        )
        forced = json_tool(body)
        self._json_tool = str(forced["name"]) if forced is not None else None
        return UpstreamRequest(self._url, self._headers(request_id), orjson.dumps(anthropic_body))

    def build_embeddings_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        # Anthropic has no embeddings API; the policy loader refuses such deployments already.
        raise ProviderError(f"Deployment '{self.deployment.name}' (Anthropic) cannot serve embeddings",
                            code="endpoint_not_supported", retryable=True)

    def _headers(self, request_id: str) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            "X-Request-Id": request_id,
            **self.deployment.headers,
        }
        key = self.deployment.credential.value()
        if key:
            headers["x-api-key"] = key
        return headers

    def translate_response(self, payload: JSONDict) -> JSONDict:
        return completion(payload, created=int(self._clock()), json_tool=self._json_tool)

    def translate_error(self, status: int, payload: bytes) -> ProviderError:
        return error_from_payload(status, payload)

    def stream_translator(self) -> AnthropicStreamTranslator:
        return AnthropicStreamTranslator(created=int(self._clock()), json_tool=self._json_tool)
