"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import io
import json
import urllib.request
from typing import Any

import aiohttp
from multidict import CIMultiDict

from sidecar.cli.main import DEMO_TOKEN

EXPIRED_TOKEN = "cgt_test_expired_0000000000000000000000000"
RESTRICTED_TOKEN = "cgt_test_restricted_000000000000000000000"
CHAT_PATH = "/api/client/v1/chat/completions"

__all__ = ["CHAT_PATH", "DEMO_TOKEN", "EXPIRED_TOKEN", "RESTRICTED_TOKEN", "chat_body", "parse_sse", "provider_requests"]


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
