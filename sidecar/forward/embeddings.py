"""Relaying an embeddings answer (OpenAI's `{"object": "list", "data": [...], "usage"}`) to the client.

Like a whole chat completion: the client's model key and the request id are stamped, usage is
collected (`usage.prompt_tokens`; embeddings write no tokens), and a failure before the answer is
a JSON error with its status. Vectors are not text, so no output guardrail reads them.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from sidecar.core.errors import GatewayError, ProviderError
from sidecar.core.types import JSONDict, Usage
from sidecar.forward.exchange import Exchange
from sidecar.forward.relay import transport_error
from sidecar.responses import JSON_CONTENT_TYPE


async def relay_embeddings(
    send: AbstractAsyncContextManager[aiohttp.ClientResponse], exchange: Exchange
) -> web.Response:
    try:
        async with send as upstream:
            payload = await upstream.read()
            exchange.first_byte = time.monotonic()
            if upstream.status != 200:
                raise exchange.provider.translate_error(upstream.status, payload)
            answer = embeddings_answer(payload)
        exchange.usage = embeddings_usage(answer.get("usage"))
    except (GatewayError, TimeoutError, aiohttp.ClientError) as exc:
        return exchange.fail(transport_error(exc))
    answer["model"] = exchange.decision.model_key
    answer["request_id"] = exchange.decision.request_id
    exchange.status = 200
    return web.Response(body=orjson.dumps(answer), content_type=JSON_CONTENT_TYPE, headers=exchange.headers())


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


def embeddings_usage(value: Any) -> Usage | None:
    """OpenAI's embeddings usage (`prompt_tokens`, `total_tokens`); None when it has no count."""
    prompt = value.get("prompt_tokens") if isinstance(value, dict) else None
    if not isinstance(prompt, int) or isinstance(prompt, bool) or prompt < 0:
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=0)
