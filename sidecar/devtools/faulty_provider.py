"""A local provider that fails on demand: for the reliability tests and the benchmark.

It speaks OpenAI (`/v1/chat/completions`, `/v1/embeddings`), Azure OpenAI
(`/openai/deployments/{d}/chat/completions` and `.../embeddings`) and Anthropic (`/v1/messages`).
How it behaves is set per upstream model name (the body's `model`, or Azure's deployment), so tests
sharing one server do not disturb each other:

    POST /_mode {"model": "m", "mode": "status", "status": 500, "times": 3}   (see faulty_control)

Modes: `ok`; `status` (an error answer with `status` in the wire format; 429 adds Retry-After);
`slow` (`delay` seconds before answering); `silence` (stream headers, then `delay` of silence);
`drip` (`delay` between streamed words); `reset` (the connection drops: before the answer, or for
streams after `after` words); `garbage` (a body that is not JSON, or a malformed event after
`after` words); `hang` (headers, `after` words, then nothing); `error_event` (an in-stream error
event after `after` words); `no_finish` (an OpenAI stream whose chunks never carry a finish_reason,
as some compatible servers send them); `bad_shape` (after `after` words, an event that is JSON but not a
chunk); `two_choices` (an OpenAI stream of two interleaved choices whose deltas carry no role).
`long` (a whole answer whose usage reports 3,000 completion tokens, or the request's max_tokens /
max_completion_tokens when smaller: a provider that writes as much as it is allowed);
`sse_error` (after `after` words an `event: error` event with a bare `{"message"}`, then the rest);
`null_choices` (after `after` words a chunk with `choices: null`, then the rest); `json_answer` /
`json_error` (a stream request answered 200 with a whole JSON answer / an error object of `status`).
`times` makes a mode apply to that many requests only; `usage` (any mode) is reported instead of
the true usage, in the wire's own fields.

Like the real APIs: a 429 carries `Retry-After` and rate-limit headers; Azure api-versions before
2024-09-01 refuse `stream_options` and `max_completion_tokens` with a 400; an Anthropic request
that forces one tool (`tool_choice: {"type": "tool"}`) is answered with that tool's `tool_use`.

Run alone: `python -m sidecar.devtools.faulty_provider --port 8091`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sidecar.devtools.demo_provider import embedding_vector
from sidecar.devtools.faulty_control import (
    COUNTS,
    FAULTS,
    RECEIVED,
    Fault,
    read_json,
    received,
    record,
    set_mode,
    stats,
    take_fault,
)
from sidecar.devtools.faulty_wire import (
    ANTHROPIC,
    AZURE,
    OPENAI,
    RATE_LIMITED_HEADERS,
    StreamEvents,
    completion,
    error_body,
    words,
)

AZURE_NEWER_FIELDS = ("stream_options", "max_completion_tokens")
HANG_SECONDS = 30.0  # a hung answer ends by itself eventually, so the server can always shut down


Serve = Callable[[web.Request, str, str, dict[str, Any]], Awaitable[web.StreamResponse]]


async def _openai(request: web.Request, serve: Serve) -> web.StreamResponse:
    body = await read_json(request)
    return await serve(request, OPENAI, str(body.get("model")), body)


async def _azure(request: web.Request, serve: Serve, *, check_fields: bool) -> web.StreamResponse:
    """Azure's refusals first (401 without api-key or api-version; with `check_fields`, 400 for a field
    its api-version does not know), then `serve` under the deployment's name."""
    body = await read_json(request)
    deployment = request.match_info["deployment"]
    return (_azure_refusal(request, deployment, body)
            or (_azure_unknown_fields(request, deployment, body) if check_fields else None)
            or await serve(request, AZURE, deployment, body))


async def openai_chat(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions in OpenAI's wire format, playing the model's fault."""
    return await _openai(request, _serve)


async def azure_chat(request: web.Request) -> web.StreamResponse:
    """POST /openai/deployments/{deployment}/chat/completions in Azure's format; 401 without api-key or api-version."""
    return await _azure(request, _serve, check_fields=True)


async def openai_embeddings(request: web.Request) -> web.StreamResponse:
    """POST /v1/embeddings on the OpenAI wire, failing as the request's fault mode asks."""
    return await _openai(request, _serve_embeddings)


async def azure_embeddings(request: web.Request) -> web.StreamResponse:
    """POST /openai/deployments/{d}/embeddings on the Azure wire, failing as the fault mode asks."""
    return await _azure(request, _serve_embeddings, check_fields=False)


def _azure_refusal(request: web.Request, deployment: str, body: dict[str, Any]) -> web.Response | None:
    """Azure's 401 for a call without `api-key` or `api-version`; None when both are there."""
    if request.headers.get("api-key") and request.query.get("api-version"):
        return None
    record(request, AZURE, deployment, body)
    return _error(AZURE, 401, "Access denied due to invalid subscription key or wrong API endpoint.")


def _azure_unknown_fields(request: web.Request, deployment: str, body: dict[str, Any]) -> web.Response | None:
    """Azure's 400 for a field its api-version does not know (before 2024-09-01: stream_options,
    max_completion_tokens); None when every field is known."""
    unknown = [f for f in AZURE_NEWER_FIELDS if f in body and request.query["api-version"][:10] < "2024-09-01"]
    if not unknown:
        return None
    record(request, AZURE, deployment, body)
    return _error(AZURE, 400, f"Unrecognized request argument supplied: {unknown[0]}")


async def _serve_embeddings(request: web.Request, wire: str, model: str, body: dict[str, Any]) -> web.StreamResponse:
    """Embeddings under the same faults as whole chat answers (status, slow, reset, garbage, hang)."""
    record(request, wire, model, body)
    fault = take_fault(request.app, model)
    if fault.mode == "status":
        return _error(wire, fault.status, f"Injected failure {fault.status} for {model}")
    if fault.mode == "slow":
        await asyncio.sleep(fault.delay)
    if fault.mode in ("reset", "garbage", "hang"):
        return await _whole(request, wire, model, 0, fault)
    inputs = body.get("input")
    items = [inputs] if isinstance(inputs, str) else list(inputs or [])
    return web.json_response({"object": "list", "model": model, "usage": {"prompt_tokens": 5, "total_tokens": 5},
                              "data": [{"object": "embedding", "index": i, "embedding": embedding_vector(str(item), 4)}
                                       for i, item in enumerate(items)]})


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages in Anthropic's Messages format; 401 without x-api-key or anthropic-version."""
    body = await read_json(request)
    model = str(body.get("model"))
    if not request.headers.get("x-api-key") or not request.headers.get("anthropic-version"):
        record(request, ANTHROPIC, model, body)
        return _error(ANTHROPIC, 401, "invalid x-api-key")
    return await _serve(request, ANTHROPIC, model, body)


async def _serve(request: web.Request, wire: str, model: str, body: dict[str, Any]) -> web.StreamResponse:
    record(request, wire, model, body)
    fault = take_fault(request.app, model)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) + 3 for m in body.get("messages", []))
    if fault.mode == "status":
        return _error(wire, fault.status, f"Injected failure {fault.status} for {model}")
    if fault.mode == "slow":
        await asyncio.sleep(fault.delay)
    forced = _forced_tool(wire, body)
    if not body.get("stream"):
        if fault.mode == "long":
            return web.json_response(completion(wire, model, prompt_tokens, completion_tokens=_allowed(body)))
        return await _whole(request, wire, model, prompt_tokens, fault, forced)
    if fault.mode == "json_answer":
        return web.json_response(completion(wire, model, prompt_tokens, tool=forced, usage=fault.usage))
    if fault.mode == "json_error":  # the error object, but with a 200
        return web.Response(body=error_body(wire, fault.status, f"Injected failure {fault.status} for {model}"),
                            content_type="application/json")
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    events = StreamEvents(wire, model, prompt_tokens, include_usage, forced, usage=fault.usage)
    return await _stream(request, events, fault)


def _forced_tool(wire: str, body: dict[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    if wire == ANTHROPIC and isinstance(choice, dict) and choice.get("type") == "tool":
        return str(choice.get("name"))
    return None


def _allowed(body: dict[str, Any]) -> int:
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    return min(3000, cap) if isinstance(cap, int) else 3000


async def _whole(request: web.Request, wire: str, model: str, prompt_tokens: int,
                 fault: Fault, forced: str | None = None) -> web.StreamResponse:
    if fault.mode == "reset":
        _drop(request)
        return web.Response()  # never sent: the connection is gone
    if fault.mode == "garbage":
        return web.Response(body=b"<html>502 Bad Gateway</html>", content_type="application/json")
    if fault.mode == "hang":
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "4096"})
        await response.prepare(request)
        await asyncio.sleep(HANG_SECONDS)
        return response
    return web.json_response(completion(wire, model, prompt_tokens, tool=forced, usage=fault.usage))


async def _stream(request: web.Request, events: StreamEvents, fault: Fault) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    if fault.mode == "silence":
        await asyncio.sleep(fault.delay)
    if fault.mode == "two_choices":
        for event in events.two_choices():
            await response.write(event)
        return response
    for event in events.head():
        await response.write(event)
    for index, word in enumerate(words(events.model)):
        if index == fault.after and await _strike(request, response, events, fault):
            return response
        if fault.mode == "drip":
            await asyncio.sleep(fault.delay)
        await response.write(events.word(word))
    for event in events.tail(finish=fault.mode != "no_finish"):
        await response.write(event)
    return response


async def _strike(request: web.Request, response: web.StreamResponse, events: StreamEvents, fault: Fault) -> bool:
    """Injects the mid-stream fault; True when the stream must end here."""
    if fault.mode == "reset":
        await asyncio.sleep(0.05)  # let the words already written reach the gateway first
        _drop(request)
        return True
    if fault.mode == "garbage":
        await response.write(b"data: {this is not json\n\n")
        return False  # the gateway must stop reading at the malformed event whatever follows
    if fault.mode == "hang":
        await asyncio.sleep(HANG_SECONDS)
        return True
    if fault.mode == "bad_shape":
        await response.write(b'data: {"object": "chat.completion.chunk", "choices": ["oops"]}\n\n')
        return False
    if fault.mode == "sse_error":
        await response.write(events.sse_error("Injected SSE error event"))
        return False  # the gateway must stop at the error event whatever follows
    if fault.mode == "null_choices":
        await response.write(events.null_choices())
        return False
    if fault.mode == "error_event":
        await response.write(events.error_event(fault.status, "Injected mid-stream failure"))
        return True
    return False


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _error(wire: str, status: int, message: str) -> web.Response:
    headers = RATE_LIMITED_HEADERS[wire] if status == 429 else {}
    return web.Response(status=status, body=error_body(wire, status, message), content_type="application/json",
                        headers=headers)


def init_faulty_provider() -> web.Application:
    """The faulty provider app (OpenAI, Azure and Anthropic routes plus the /_ control routes)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[FAULTS], app[COUNTS], app[RECEIVED] = {}, {}, []
    app.router.add_post("/v1/chat/completions", openai_chat)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", azure_chat)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_post("/v1/embeddings", openai_embeddings)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", azure_embeddings)
    app.router.add_post("/_mode", set_mode)
    app.router.add_get("/_stats", stats)
    app.router.add_get("/_requests", received)
    return app


def main() -> None:
    """`python -m sidecar.devtools.faulty_provider --port N`."""
    parser = argparse.ArgumentParser(prog="python -m sidecar.devtools.faulty_provider")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    # handler_cancellation: a gateway that gives up on a hung answer ends the handler too.
    web.run_app(init_faulty_provider(), host="127.0.0.1", port=args.port, print=None, access_log=None,
                handler_cancellation=True, shutdown_timeout=0.5)


if __name__ == "__main__":
    main()
