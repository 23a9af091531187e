"""Relaying an embeddings answer (OpenAI's `{"object": "list", "data": [...], "usage"}`) to the client.

Like a whole chat completion: the client's model key and the request id are stamped, usage is
collected (`usage.prompt_tokens`; embeddings write no tokens), and a failure before the answer is
a JSON error with its status. Vectors are not text, so no output guardrail reads them. An answer
over `SPLICE_OVER` bytes keeps its `data` array's bytes as they came (`json_splice`): only the
rest is parsed and written again.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from sidecar.core.errors import ProviderError
from sidecar.core.failure_table import Phase
from sidecar.core.types import JSONDict, Usage
from sidecar.forward.exchange import Exchange
from sidecar.forward.failures import PROVIDER_FAILURES, provider_failure
from sidecar.forward.json_splice import member_span
from sidecar.forward.relay import whole_answer
from sidecar.forward.usage import ProviderUsage
from sidecar.responses import JSON_CONTENT_TYPE

SPLICE_OVER = 256 * 1024  # bytes; below it a whole parse costs well under a millisecond


async def relay_embeddings(
    send: AbstractAsyncContextManager[aiohttp.ClientResponse], exchange: Exchange
) -> web.Response:
    """Relays an embeddings list (the client's model key, `request_id`, usage collected); a provider's
    error answer or a failure is a JSON error with its status (a 429 keeps its back-off headers)."""
    try:
        async with whole_answer(send, exchange) as payload:
            reports = ProviderUsage(exchange.decision.request_id, exchange.deployment.name)
            body, exchange.usage = stamped_answer(payload, exchange.decision.model_key,
                                                  exchange.decision.request_id, reports)
    except PROVIDER_FAILURES as exc:
        return exchange.fail(provider_failure(exc, Phase.ANSWER))
    exchange.status = 200
    return web.Response(body=body, content_type=JSON_CONTENT_TYPE, headers=exchange.headers())


def stamped_answer(payload: bytes, model_key: str, request_id: str,
                   reports: ProviderUsage) -> tuple[bytes, Usage | None]:
    """The client's answer (its `model` the client's key, with `request_id`) and the usage it reports
    (`usage.prompt_tokens`, read by `reports`: None when absent or refused); raises ProviderError
    (502 `bad_provider_response`) for an answer that is not an embeddings list."""
    if len(payload) > SPLICE_OVER:
        spliced = _spliced(payload, model_key, request_id, reports)
        if spliced is not None:
            return spliced
    answer = embeddings_answer(payload)
    answer["model"] = model_key
    answer["request_id"] = request_id
    return orjson.dumps(answer), reports.read(answer.get("usage"), completion=False)


def _spliced(payload: bytes, model_key: str, request_id: str,
             reports: ProviderUsage) -> tuple[bytes, Usage | None] | None:
    """Parse all but the `data` array, stamp, and put the array's own bytes back; None when the
    answer is not shaped for that (the whole parse then decides)."""
    span = member_span(payload, "data")
    if span is None or payload[span[0]] != ord("["):
        return None
    start, end = span
    if end - start > 2 and payload.find(b'"embedding"', start, end) < 0:
        return None  # not a list of embedding objects: the whole parse reports it
    marker = "cgt-data-" + secrets.token_hex(8)  # a string no provider answer contains
    try:
        head = orjson.loads(b"".join((payload[:start], orjson.dumps(marker), payload[end:])))
    except orjson.JSONDecodeError:
        return None
    if not isinstance(head, dict) or head.get("data") != marker:
        return None
    head["model"] = model_key
    head["request_id"] = request_id
    stamped, quoted = orjson.dumps(head), orjson.dumps(marker)
    at = stamped.index(quoted)
    body = b"".join((stamped[:at], memoryview(payload)[start:end], stamped[at + len(quoted):]))
    return body, reports.read(head.get("usage"), completion=False)


def embeddings_answer(payload: bytes) -> JSONDict:
    """The provider's answer if it is an embeddings list (`data`: objects with an `embedding`
    array, or a base64 string); anything else is the provider's fault: 502 `bad_provider_response`."""
    try:
        answer: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        answer = None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(
            isinstance(item, dict) and isinstance(item.get("embedding"), list | str) for item in data):
        raise ProviderError("Provider returned a malformed embeddings answer", code="bad_provider_response")
    assert isinstance(answer, dict)
    return answer

