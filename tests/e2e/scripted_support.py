"""The scripted provider's client side for the end-to-end tests: start it, read what it received,
and the request and answer shapes the tests send it (tests/e2e/scripted_provider.py answers what
a request's `script:` message asks for)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.devtools.launcher import Stack, free_port, wait_http
from tests.e2e.support import parse_sse, post_chat


class ScriptedProvider:
    """tests/e2e/scripted_provider.py in a process of its own on a free port; `received()` is every
    body it was sent, in order."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "scripted-provider.log").open("wb")
        self._process = subprocess.Popen([sys.executable, "-m", "tests.e2e.scripted_provider", "--port",
                                          str(self.port)], stdout=self._log, stderr=subprocess.STDOUT)
        wait_http(self.url + "/_requests", process=self._process)

    def received(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/_requests", timeout=5) as response:
            bodies: list[dict[str, Any]] = json.loads(response.read())
            return bodies

    def stop(self) -> None:
        self._process.send_signal(signal.SIGTERM)
        self._process.wait(10)
        self._log.close()


async def send(stack: Stack, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        status, _, raw = await post_chat(session, stack.base_url, body)
        return status, raw


def scripted(model: str, message: dict[str, Any], *, stream: bool, deltas: list[dict[str, Any]] | None = None,
             **extra: Any) -> dict[str, Any]:
    script = json.dumps({"message": message, "piece": 5, "deltas": deltas})
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "script:" + script}], **extra}


def answer(raw: bytes, stream: bool) -> dict[str, Any]:
    """The assistant message the client sees (a stream's deltas put together)."""
    if not stream:
        message: dict[str, Any] = json.loads(raw)["choices"][0]["message"]
        return message
    merged: dict[str, Any] = {"logprobs": []}
    for payload in parse_sse(raw):
        if payload == "[DONE]" or not json.loads(payload).get("choices"):
            continue
        choice = json.loads(payload)["choices"][0]
        for name, value in choice["delta"].items():
            if isinstance(value, str) and name != "role":
                merged[name] = merged.get(name, "") + value
        for call in choice["delta"].get("tool_calls") or []:
            calls = merged.setdefault("tool_calls", {})
            entry = calls.setdefault(call["index"], {"id": None, "arguments": ""})
            entry["id"] = call.get("id") or entry["id"]
            entry["arguments"] += (call.get("function") or {}).get("arguments") or ""
        merged["logprobs"] += [e["token"] for e in ((choice.get("logprobs") or {}).get("content") or [])]
    return merged


def tool_call(arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "send_mail", "arguments": arguments}}
