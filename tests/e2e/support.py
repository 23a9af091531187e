"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from sidecar.cli.main import DEMO_TOKEN

EXPIRED_TOKEN = "cgt_test_expired_0000000000000000000000000"
RESTRICTED_TOKEN = "cgt_test_restricted_000000000000000000000"
CHAT_PATH = "/api/client/v1/chat/completions"

__all__ = ["CHAT_PATH", "DEMO_TOKEN", "EXPIRED_TOKEN", "RESTRICTED_TOKEN", "chat_body", "log_entries", "parse_sse",
           "provider_requests"]


def chat_body(content: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4", "messages": [{"role": "user", "content": content}], **extra}


def auth(token: str = DEMO_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_chat(session: aiohttp.ClientSession, base_url: str, body: Any = None, *, token: str | None = DEMO_TOKEN,
                    data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, CIMultiDict[str], bytes]:
    sent = {**(auth(token) if token else {}), **(headers or {})}
    payload = data if data is not None else json.dumps(body).encode()
    # aiohttp warns about big raw bytes bodies; a BytesIO streams them.
    async with session.post(base_url + CHAT_PATH, data=io.BytesIO(payload), headers=sent) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


def parse_sse(raw: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order; asserts the framing is exactly OpenAI's."""
    events = raw.decode().split("\n\n")
    assert events[-1] == "", f"stream must end with a blank line: {raw[-80:]!r}"
    payloads = []
    for event in events[:-1]:
        if event.startswith(":"):
            continue  # keepalive comment
        assert event.startswith("data: "), event
        payloads.append(event[len("data: "):])
    return payloads


def provider_requests(provider_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(provider_url + "/_requests", timeout=5) as response:
        result: list[dict[str, Any]] = json.loads(response.read())
    return result


async def log_entries(workdir: Path, *needles: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The JSON lines of `workdir/stack.log` that contain every one of `needles` (plain substrings of the
    raw line), parsed, once at least `count` of them are there.

    A line can land after the client has its answer: the sidecar flushes its log once per event-loop
    turn, and writes a stream's access line after the stream's last byte. So the file is read again
    every 50 ms for up to `timeout` seconds; what is there then is returned, and the caller's assert
    shows any shortfall."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        text = (workdir / "stack.log").read_text(encoding="utf-8", errors="replace")
        found = [json.loads(line) for line in text.splitlines()
                 if line.startswith("{") and all(needle in line for needle in needles)]
        if len(found) >= count or asyncio.get_running_loop().time() >= deadline:
            return found
        await asyncio.sleep(0.05)
