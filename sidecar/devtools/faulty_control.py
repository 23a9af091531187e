"""The faulty provider's control plane: which fault to play per model, and what was received.

    POST /_mode {"model": "m", "mode": "status", "status": 500, "times": 3}
    GET  /_stats  -> {"m": 4, ...}   requests received per model
    GET  /_requests?model=m          what was received (headers, query, body)

State lives on the app (`FAULTS`, `COUNTS`, `RECEIVED`), never in the module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson
from aiohttp import web

MODES = ("ok", "status", "slow", "silence", "drip", "reset", "garbage", "hang", "error_event", "no_finish",
         "bad_shape", "two_choices", "long", "sse_error", "null_choices", "json_answer", "json_error")


@dataclass
class Fault:
    """A failure to play for one model: `mode` (see MODES), HTTP `status`, `delay` seconds, after `after` words,
    `times` times (None: always); `usage`: the usage object to report instead of the true one, in the
    wire's own fields (OpenAI's prompt/completion/total_tokens, Anthropic's input/output_tokens), with any mode.
    """

    mode: str = "ok"
    status: int = 500
    delay: float = 0.0
    after: int = 2
    times: int | None = None
    usage: dict[str, Any] | None = None


FAULTS = web.AppKey("faults", dict)
COUNTS = web.AppKey("counts", dict)
RECEIVED = web.AppKey("received", list)


def take_fault(app: web.Application, model: str) -> Fault:
    """The fault to play for `model` now (`ok` when none is set); counts down its `times`."""
    faults: dict[str, Fault] = app[FAULTS]
    fault = faults.get(model, Fault())
    if fault.times is not None:
        fault.times -= 1
        if fault.times <= 0:
            del faults[model]
    return fault


def record(request: web.Request, wire: str, model: str, body: dict[str, Any]) -> None:
    """Counts the request for `model` and keeps what was received (for `/_requests`)."""
    counts: dict[str, int] = request.app[COUNTS]
    counts[model] = counts.get(model, 0) + 1
    request.app[RECEIVED].append({"wire": wire, "model": model, "query": dict(request.query),
                                  "headers": {k.lower(): v for k, v in request.headers.items()}, "body": body})


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (anything else: `{}`)."""
    value = orjson.loads(await request.read())
    return value if isinstance(value, dict) else {}


async def set_mode(request: web.Request) -> web.Response:
    """POST /_mode `{"model", "mode", …}`: sets a model's Fault; 400 for an unknown mode."""
    spec = await read_json(request)
    model = str(spec.pop("model"))
    known = {f.name for f in fields(Fault)}
    fault = Fault(**{k: v for k, v in spec.items() if k in known})
    if fault.mode not in MODES:
        return web.json_response({"error": f"unknown mode {fault.mode}"}, status=400)
    request.app[FAULTS][model] = fault
    return web.json_response({"model": model, **asdict(fault)})


async def stats(request: web.Request) -> web.Response:
    """GET /_stats: requests counted per model."""
    return web.json_response(request.app[COUNTS])


async def received(request: web.Request) -> web.Response:
    """GET /_requests[?model=]: the requests received, for tests."""
    model = request.query.get("model")
    return web.json_response([r for r in request.app[RECEIVED] if model is None or r["model"] == model])
