"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, Groq, Together, the demo provider)."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.core.errors import ProviderError
from sidecar.core.routes import Deployment
from sidecar.core.types import JSONDict, SSEEvent
from sidecar.providers.base import UpstreamRequest, is_provider_rejection, provider_rejection


class OpenAICompatible:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._url = deployment.base_url.rstrip("/") + "/chat/completions"

    def build_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        body["model"] = self.deployment.upstream_model
        fit_openai_body(body, self.deployment)
        return UpstreamRequest(self._url, self._headers(request_id), orjson.dumps(body))

    def build_embeddings_request(self, body: JSONDict, *, request_id: str) -> UpstreamRequest:
        """OpenAI's `POST {base_url}/embeddings`, the body as the client sent it but for `model`."""
        body["model"] = self.deployment.upstream_model
        url = self.deployment.base_url.rstrip("/") + "/embeddings"
        return UpstreamRequest(url, self._headers(request_id), orjson.dumps(body))

    def _headers(self, request_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id, **self.deployment.headers}
        key = self.deployment.credential.value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def translate_response(self, payload: JSONDict) -> JSONDict:
        return payload

    def translate_error(self, status: int, payload: bytes) -> ProviderError:
        return error_from_openai_payload(status, payload)

    def stream_translator(self) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator()


def fit_openai_body(body: JSONDict, deployment: Deployment) -> None:
    """The deployment's own settings on an OpenAI-format body (a per-attempt copy; top-level keys only).

    Streams ask for usage (`stream_options.include_usage`, for accounting; the relay drops the
    extra chunk when the client did not ask) where the deployment takes it, and carry no
    `stream_options` at all where it does not (Azure before 2024-09-01 rejects the field: usage is
    then settled by estimate). A `max_completion_tokens` moves to `max_tokens` for deployments
    that only know the older name.
    """
    if body.get("stream"):
        if deployment.stream_include_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
    if deployment.max_tokens_field == "max_tokens" and body.get("max_tokens") is None \
            and body.get("max_completion_tokens") is not None:
        body["max_tokens"] = body.pop("max_completion_tokens")


class OpenAIStreamTranslator:
    """OpenAI chunks need no translation; this parses them and notices `[DONE]` and error events."""

    def __init__(self) -> None:
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SSEEvent) -> list[JSONDict]:
        """The event's chunk; raises ProviderError for the provider's error (`data: {"error": …}`,
        or an `event: error` event whatever its data) and, as 502 `bad_provider_stream`, for an
        event that is not a chunk whose `choices` is a list of objects (a client reads
        `chunk.choices[0]`). A usage chunk without `choices` gets `choices: []`, OpenAI's shape."""
        if event.event == "error":
            raise stream_error(event.data)
        if event.data == "[DONE]":
            self._done = True
            return []
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise _malformed("an event that is not JSON") from exc
        if not isinstance(chunk, dict):
            raise _malformed("an event that is not a JSON object")
        if "error" in chunk:
            raise stream_error(event.data)
        choices = chunk.get("choices")
        if choices is None:
            if not isinstance(chunk.get("usage"), dict):
                raise _malformed("a chunk without a choices list")
            chunk["choices"] = []
        elif not _chunk_shaped(choices):
            # The relay and the output guards read choices and deltas as objects.
            raise _malformed("a chunk whose choices are not a list of objects")
        return [chunk]


def _malformed(what: str) -> ProviderError:
    return ProviderError(f"Provider sent a malformed stream event: {what}", code="bad_provider_stream")


def stream_error(data: str) -> ProviderError:
    """A provider's error in its stream (the data of `data: {"error": …}` or of an `event: error`
    event): its message, type and code as for an error answer, with status 502; a bare
    `{"message": …}` keeps its message, and anything else says the provider reported an error."""
    payload = data.encode()
    if _error_fields(payload)[0] is None:
        try:
            parsed: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
        message = parsed.get("message") if isinstance(parsed, dict) else None
        text = message if isinstance(message, str) and message else "Provider reported an error in the stream"
        payload = orjson.dumps({"error": {"message": text}})
    return error_from_openai_payload(502, payload)


def _chunk_shaped(choices: Any) -> bool:
    """A list of objects whose `delta`, when present, is an object (a loop: this runs per chunk)."""
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict) or ("delta" in choice and not isinstance(choice["delta"], dict)):
            return False
    return True


def error_from_openai_payload(status: int, payload: bytes) -> ProviderError:
    """Keep the provider's message and type; map its status so clients see a sensible one.

    A 401/402/403/404 is the provider rejecting the gateway's deployment: a 502 (`provider_rejection`).
    """
    message, error_type, code, param = _error_fields(payload)
    if is_provider_rejection(status):
        return provider_rejection(status, message or f"Provider returned HTTP {status}")
    mapped = status if 400 <= status < 500 else 502
    return ProviderError(
        message or f"Provider returned HTTP {status}",
        status=mapped,
        error_type=error_type or ("provider_error" if mapped >= 500 else "invalid_request_error"),
        code=code,
        param=param,
        retryable=status >= 500 or status == 429,
    )


def _error_fields(payload: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        parsed: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, None, None, None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, None, None, None

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) else None

    return text("message"), text("type"), text("code"), text("param")
