"""An OpenAI-style provider whose answer is written by the test: `python -m tests.e2e.scripted_provider --port N`.

The last user message is `script: {JSON}` with `message` (the assistant message to answer with:
content, refusal, reasoning_content, reasoning, tool_calls, function_call) and optionally
`piece` (characters per streamed delta, default 4), or `deltas` (the stream's deltas after the
role chunk, sent as they are: any field in any shape). Streams send every string field in pieces,
tool-call arguments as deltas keyed by the call's index (parallel calls interleaved), and, when the
request sets `logprobs`, one `logprobs.content` entry per content piece. `GET /_requests` lists
the bodies received, so tests can check what reached the provider.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from aiohttp import web

RECEIVED = web.AppKey("received", list)
TEXT_FIELDS = ("reasoning_content", "reasoning", "content", "refusal")


def script_of(body: dict[str, Any]) -> dict[str, Any]:
    last: dict[str, Any] = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), {})
    content = last.get("content")
    if isinstance(content, str) and content.startswith("script:"):
        script: dict[str, Any] = json.loads(content[len("script:"):])
        return script
    return {"message": {"content": "ok"}}


def pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def deltas(message: dict[str, Any], size: int, logprobs: bool) -> list[dict[str, Any]]:
    """The choice objects of the stream, after the role chunk."""
    out: list[dict[str, Any]] = []
    for field in TEXT_FIELDS:
        if isinstance(message.get(field), str):
            for piece in pieces(message[field], size):
                choice: dict[str, Any] = {"index": 0, "delta": {field: piece}, "finish_reason": None}
                if logprobs and field == "content":
                    choice["logprobs"] = {"content": [{"token": piece, "logprob": -0.1,
                                                       "bytes": list(piece.encode()), "top_logprobs": []}]}
                out.append(choice)
    calls = message.get("tool_calls") or []
    if calls:
        out.append({"index": 0, "delta": {"tool_calls": [
            {"index": i, "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": ""}}
            for i, c in enumerate(calls)]}, "finish_reason": None})
        split = [pieces(c["function"]["arguments"], size) for c in calls]
        for step in range(max(len(s) for s in split)):
            out.append({"index": 0, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": s[step]}} for i, s in enumerate(split) if step < len(s)]},
                "finish_reason": None})
    if message.get("function_call"):
        function = message["function_call"]
        for number, piece in enumerate(pieces(function["arguments"], size)):
            head = {"name": function["name"]} if number == 0 else {}
            out.append({"index": 0, "delta": {"function_call": {**head, "arguments": piece}}, "finish_reason": None})
    return out


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[RECEIVED].append(body)
    script = script_of(body)
    message = {"role": "assistant", **script["message"]}
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    base = {"id": "chatcmpl-scripted", "created": 1, "model": body["model"]}
    usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    if not body.get("stream"):
        return web.json_response({**base, "object": "chat.completion", "usage": usage,
                                  "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    scripted = [{"index": 0, "delta": delta, "finish_reason": None} for delta in script.get("deltas") or ()]
    for choice in scripted or deltas(message, int(script.get("piece", 4)), bool(body.get("logprobs"))):
        await send([choice])
    await send([{"index": 0, "delta": {}, "finish_reason": finish}])
    if (body.get("stream_options") or {}).get("include_usage"):
        await send([], usage=usage)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def received(request: web.Request) -> web.Response:
    return web.json_response(request.app[RECEIVED])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    app = web.Application()
    app[RECEIVED] = []
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/_requests", received)
    web.run_app(app, host="127.0.0.1", port=parser.parse_args().port, print=None)


if __name__ == "__main__":
    main()
