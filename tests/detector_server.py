"""A real local detector for the webhook guardrail tests: it flags and masks, answers slowly, fails
or answers garbage, chosen by the URL path, and remembers what it was sent (`GET /_calls`).

It runs its own event loop in a thread, so unit tests (one loop per test) and end-to-end tests
(the sidecar in another process) share it; it binds 127.0.0.1 on a free port.

- `/check`: the example detector's findings (sidecar.devtools.example_detector), plus `BANANA-<n>`
  as category `codeword` with a span (placeholder numbering), `zebra` with the replacement
  `[ANIMAL]`, a run of 16 digits as `card` with a span (a bare JSON number in arguments), and
  "maybe ignore" as `injection` with score 0.3; `ostrich` and `kiwi` with replacements that are
  not JSON-safe as they stand (`x"}, "evil": "1`, `C:\\redacted`), and `SECRET…END` as `across`
  (a span that may cover JSON structure), the digits after `770` as `tail` (a span that starts
  inside a number);
- `/slow`: answers clean after `SLOW_SECONDS` (or `?seconds=`);  `/fail`: 500;  `/toolarge`: 413;  `/garbage`: not JSON;
  `/badspan`: a span past the end of its text;  `/wrongversion`: another contract version.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

from aiohttp import web

from sidecar.devtools.example_detector import VERSION, detect
from sidecar.devtools.launcher import free_port

SLOW_SECONDS = 2.0
CALLS = web.AppKey("calls", list[dict[str, Any]])
_CODEWORD = re.compile(r"BANANA-\d+")
_CARD = re.compile(r"(?<!\d)\d{16}(?!\d)")
# Replacements that are not JSON-safe as they stand: a quote that would end a string and add a key,
# a backslash that would start an escape (`\r`).
_HOSTILE = {"ostrich": 'x"}, "evil": "1', "kiwi": "C:\\redacted"}
# A span from `SECRET` to `END`, across whatever lies between (quotes, keys, commas in JSON).
_ACROSS = re.compile(r"SECRET.*?END", re.DOTALL)
# The digits after `770` (a span that starts inside a number: its token is masked whole).
_TAIL = re.compile(r"(?<=770)\d+")


def _findings(texts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    findings = detect(texts)
    for text in texts:
        for match in _CODEWORD.finditer(text["text"]):
            findings.append({"category": "codeword", "message": "Code word",
                             "span": {"path": text["path"], "start": match.start(), "end": match.end()}})
        for match in _CARD.finditer(text["text"]):
            findings.append({"category": "card", "message": "Card number",
                             "span": {"path": text["path"], "start": match.start(), "end": match.end()}})
        for match in re.finditer("zebra", text["text"]):
            findings.append({"category": "animal", "message": "Animal", "replacement": "[ANIMAL]",
                             "span": {"path": text["path"], "start": match.start(), "end": match.end()}})
        for word, replacement in _HOSTILE.items():
            for match in re.finditer(word, text["text"]):
                findings.append({"category": "hostile", "message": "Replaced", "replacement": replacement,
                                 "span": {"path": text["path"], "start": match.start(), "end": match.end()}})
        for match in _TAIL.finditer(text["text"]):
            findings.append({"category": "tail", "message": "Account number",
                             "span": {"path": text["path"], "start": match.start(), "end": match.end()}})
        for match in _ACROSS.finditer(text["text"]):
            findings.append({"category": "across", "message": "Across JSON values",
                             "span": {"path": text["path"], "start": match.start(), "end": match.end()}})
        if "maybe ignore" in text["text"]:
            findings.append({"category": "injection", "message": "Weak signal", "score": 0.3})
    return findings


async def _handle(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[CALLS].append({"path": request.path, "headers": {k.lower(): v for k, v in request.headers.items()},
                               "body": body, "at": time.monotonic()})
    mode = request.path.strip("/")
    if mode == "slow":
        await asyncio.sleep(float(request.query.get("seconds", SLOW_SECONDS)))
        return web.json_response({"version": VERSION, "findings": []})
    if mode == "fail":
        return web.json_response({"error": "boom"}, status=500)
    if mode == "toolarge":
        return web.json_response({"error": "texts too large"}, status=413)
    if mode == "garbage":
        return web.Response(text="<html>not json</html>", content_type="text/html")
    if mode == "badspan":
        text = body["texts"][0]
        return web.json_response({"findings": [{"category": "x", "message": "m",
                                                "span": {"path": text["path"], "start": 0,
                                                         "end": len(text["text"]) + 5}}]})
    if mode == "wrongversion":
        return web.json_response({"version": "cgt.guardrail.v0", "findings": []})
    return web.json_response({"version": VERSION, "findings": _findings(body["texts"])})


async def _calls(request: web.Request) -> web.Response:
    return web.json_response(request.app[CALLS])


async def _reset(request: web.Request) -> web.Response:
    request.app[CALLS].clear()
    return web.json_response({})


class DetectorServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = web.Application()
        self.app[CALLS] = []
        self.app.router.add_get("/_calls", _calls)
        self.app.router.add_delete("/_calls", _reset)
        self.app.router.add_post("/{mode}", _handle)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> DetectorServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test detector did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """What the detector received so far (read from its own thread's list: appends are atomic)."""
        return self.app[CALLS].copy()

    def reset(self) -> None:
        self._loop.call_soon_threadsafe(self.app[CALLS].clear)
