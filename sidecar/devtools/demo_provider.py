"""A local provider speaking OpenAI's wire format, for `make run`, the tests and the benchmark.

It answers with a short deterministic reply built from the last user message (so output-side
features can be exercised on purpose), streams it word by word, and reports `usage`. It serves
embeddings too: deterministic unit vectors derived from each input's SHA-256 (the same input
gives the same vector), `EMBEDDING_DIMENSIONS` long unless `dimensions` says otherwise, as float
arrays or base64 (little-endian float32, OpenAI's encoding). The sidecar treats it like any other
OpenAI-compatible provider. `GET /_requests` lists what it
received, so tests can check exactly what reached the provider.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

RECEIVED = web.AppKey("received", list)
STREAM_DELAY = web.AppKey("stream_delay", float)
_KEEP_RECEIVED = 200
EMBEDDING_DIMENSIONS = 64


def _last_user_text(body: dict[str, Any]) -> str:
    last_user: dict[str, Any] = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), {})
    content = last_user.get("content", "")
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def reply_text(body: dict[str, Any]) -> str:
    """`echo: X` answers X verbatim (`slow: X` streams it slowly, `chars: X` three characters per
    chunk, to split values across chunks); anything else gets a greeting."""
    text = _last_user_text(body)
    for prefix in ("echo:", "slow:", "chars:"):
        if text.startswith(prefix):
            return text[len(prefix):].strip()
    return f"Hello from the demo provider. You said: {text[:200]}"


def count_tokens(text: str) -> int:
    """The demo's token count: whitespace-separated words, at least 1."""
    return max(1, len(text.split()))


def prompt_tokens(body: dict[str, Any]) -> int:
    """The demo's prompt tokens: words of every message's content, plus 3 per message."""
    return sum(count_tokens(str(m.get("content", ""))) + 3 for m in body.get("messages", []))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: a canned answer, whole or as SSE chunks (OpenAI's shapes, usage included)."""
    body = orjson.loads(await request.read())
    received = request.app[RECEIVED]
    entry: dict[str, Any] = {"headers": {k.lower(): v for k, v in request.headers.items()}, "body": body,
                             "outcome": "started"}
    received.append(entry)
    del received[:-_KEEP_RECEIVED]
    text = reply_text(body)
    usage = {"prompt_tokens": prompt_tokens(body), "completion_tokens": count_tokens(text)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    if body.get("stream"):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await _stream(request, response, body, text, usage, completion_id)
        except asyncio.CancelledError:
            entry["outcome"] = "disconnected"
            raise
        except ConnectionResetError:  # the gateway ended the exchange (a client left, a drain): not an error here
            entry["outcome"] = "disconnected"
            return response
        entry["outcome"] = "completed"
        return response
    entry["outcome"] = "completed"
    return web.json_response({
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    })


async def _stream(request: web.Request, response: web.StreamResponse, body: dict[str, Any], text: str,
                  usage: dict[str, int], completion_id: str) -> None:
    await response.prepare(request)
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model")}
    delay = request.app[STREAM_DELAY]
    if _last_user_text(body).startswith("slow:"):
        delay = max(delay, 0.2)  # lets tests disconnect mid-stream on purpose

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        await response.write(b"data: " + orjson.dumps({**base, "choices": choices, **extra}) + b"\n\n")

    await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for piece in _pieces(text, by_chars=_last_user_text(body).startswith("chars:")):
        if delay:
            await asyncio.sleep(delay)
        await send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    await send([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if (body.get("stream_options") or {}).get("include_usage"):
        await send([], usage=usage)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()


def _pieces(text: str, by_chars: bool) -> list[str]:
    if by_chars:
        return [text[i:i + 3] for i in range(0, len(text), 3)]
    words = text.split(" ")
    return [word if index == 0 else " " + word for index, word in enumerate(words)]


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A unit vector from SHA-256 blocks of the input (text, or token ids as their JSON)."""
    seed = item.encode() if isinstance(item, str) else orjson.dumps(item)
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        values.extend(word / 2**31 - 1.0 for word in struct.unpack("<8I", block))
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def embeddings(request: web.Request) -> web.Response:
    """POST /embeddings (OpenAI's shape): deterministic unit vectors, `float` or `base64`, with usage."""
    body = orjson.loads(await request.read())
    request.app[RECEIVED].append({"headers": {k.lower(): v for k, v in request.headers.items()}, "body": body,
                                  "outcome": "completed"})
    del request.app[RECEIVED][:-_KEEP_RECEIVED]
    raw = body.get("input")
    items: list[Any] = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw or [])
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(item, dimensions)
        encoded: list[float] | str = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count_tokens(item) if isinstance(item, str) else len(item) for item in items)
    return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def list_received(request: web.Request) -> web.Response:
    """GET /_requests: the most recent requests received (headers and bodies), for tests."""
    return web.json_response(request.app[RECEIVED])


def init_demo_provider(stream_delay: float = 0.0) -> web.Application:
    """The demo provider app; `stream_delay` seconds between streamed chunks."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[RECEIVED] = []
    app[STREAM_DELAY] = stream_delay
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/_requests", list_received)
    return app
