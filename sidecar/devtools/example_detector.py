"""A tiny detector speaking the webhook guardrail contract (`cgt.guardrail.v1`): start from this one.

It flags instruction-override phrases (no span: the whole request is suspect, with a score) and
finds e-mail addresses (with spans, so a `mask` guardrail can replace them). Swap `detect` for
your model or vendor call; keep the answer's shape. Run it with

    python -m sidecar.devtools.example_detector --port 8000

and point a guardrail at it: `{type: webhook, url: http://127.0.0.1:8000/check, action: block}`.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from aiohttp import web

VERSION = "cgt.guardrail.v1"
OVERRIDE = re.compile(r"ignore (all )?(previous|prior) instructions", re.IGNORECASE)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def detect(texts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings over the texts the gateway sent; spans are offsets into each `text` (code points)."""
    findings: list[dict[str, Any]] = []
    for text in texts:
        if OVERRIDE.search(text["text"]):
            findings.append({"category": "prompt_injection", "message": "Instruction override", "score": 0.95})
        for match in EMAIL.finditer(text["text"]):
            findings.append({"category": "email", "message": "E-mail address",
                             "span": {"path": text["path"], "start": match.start(), "end": match.end()}})
    return findings


async def check(request: web.Request) -> web.Response:
    """POST /check: the gateway's `cgt.guardrail.v1` document in, `{"version", "findings"}` out
    (400 for another version)."""
    body = await request.json()
    if body.get("version") != VERSION:
        return web.json_response({"error": f"expected {VERSION}"}, status=400)
    return web.json_response({"version": VERSION, "findings": detect(body["texts"])})


def init_detector() -> web.Application:
    """The detector's aiohttp app (one route, POST /check)."""
    app = web.Application(client_max_size=16 * 1024 * 1024)  # the gateway sends whole conversations
    app.router.add_post("/check", check)
    return app


def main() -> None:
    """`python -m sidecar.devtools.example_detector [--host H] [--port P]`: serves until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    web.run_app(init_detector(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
