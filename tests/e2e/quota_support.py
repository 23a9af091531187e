"""A policy folder and helpers for the quota end-to-end tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from sidecar.core.tokens import hash_token
from sidecar.devtools.demo_provider import count_tokens, prompt_tokens, reply_text
from sidecar.devtools.launcher import free_port
from sidecar.features.quotas.estimate import prompt_tokens as estimated_prompt
from tests.e2e.support import chat_body, post_chat

# Each test uses its own token(s), so tests sharing one stack never share a counter.
RULES = """
    rpm: {match: {tokens: [rpm]}, requests_per_minute: 2}
    tpm: {match: {tokens: [tpm]}, tokens_per_minute: 1000}
    conc: {match: {tokens: [conc]}, concurrent_requests: 1}
    day: {match: {tokens: [day]}, tokens_per_day: 200}
    month: {match: {tokens: [month]}, tokens_per_month: 200}
    spend: {match: {tokens: [spend]}, spend_per_day: 0.2}
    shadow: {match: {tokens: [shadow]}, requests_per_minute: 1, shadow: true}
    team: {match: {teams: [blue]}, per: [team], requests_per_minute: 3}
    burst: {match: {tokens: [burst]}, requests_per_minute: 5}
    stream: {match: {tokens: [stream, stream_usage, abort, restart]}, tokens_per_day: 100000}
    open: {match: {tokens: [open]}, requests_per_minute: 100, on_backend_error: open}
    closed: {match: {tokens: [closed]}, requests_per_minute: 100, on_backend_error: closed}
    shape: {match: {tokens: [shape]}, tokens_per_day: 100000}
"""
TOKEN_NAMES = ("rpm", "tpm", "conc", "day", "month", "spend", "shadow", "blue1", "blue2", "burst", "stream",
               "stream_usage", "abort", "restart", "open", "closed", "free", "shape")
PRICE_PROMPT, PRICE_COMPLETION = 1000.0, 2000.0  # USD per 1M tokens: 1000 and 2000 micro-USD per token


def token(name: str) -> str:
    return f"cgt_test_quota_{name}_000000000000"


def midday_zone() -> str:
    """A fixed-offset zone where it is about noon now: no day or month boundary falls inside a test."""
    offset = 12 - time.gmtime().tm_hour  # -11 … +12 hours from UTC
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


# Chosen once per test run, so policies and assertions agree even if the UTC hour turns meanwhile.
ZONE = midday_zone()


def write_quota_policies(folder: Path, store: str) -> Path:
    """The quota test policies with `store` as `limits.store` (Redis stores carry `timeout: 5s`: the
    tests count exactly, and the 0.25 s default would fail open on a slow call of a loaded CI machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.yaml").write_text(f"""
providers:
  demo:
    type: openai
    base_url: ${{GATEWAY_DEMO_PROVIDER_URL}}
    timeouts: {{connect: 2s, first_byte: 10s, idle: 10s, total: 60s}}
  dead:
    type: openai
    base_url: http://127.0.0.1:{free_port()}/v1
    timeouts: {{connect: 1s, first_byte: 1s, idle: 1s, total: 2s}}
models:
  gpt-4: {{deployments: [{{provider: demo, model: demo-gpt-4}}]}}
  broken: {{deployments: [{{provider: dead, model: nothing}}]}}
""", encoding="utf-8")
    tokens = "\n".join(f"  {name}:\n    sha256: {hash_token(token(name))}" + (
        "\n    team: blue" if name.startswith("blue") else "") for name in TOKEN_NAMES)
    (folder / "tokens.yaml").write_text("tokens:\n" + tokens + "\n", encoding="utf-8")
    (folder / "limits.yaml").write_text(f"""
limits:
  timezone: {ZONE}
  store: {store}
  models:
    gpt-4: {{completion_tokens: 50, price: {{prompt: {PRICE_PROMPT}, completion: {PRICE_COMPLETION}}}}}
  rules:{RULES}""", encoding="utf-8")
    return folder


async def call(base_url: str, name: str, body: dict[str, Any] | None = None,
               **extra: Any) -> tuple[int, CIMultiDict[str], Any]:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, base_url, body or chat_body(**extra), token=token(name))
    return status, headers, raw if headers.get("Content-Type", "").startswith("text/event-stream") else json.loads(raw)


def demo_usage(body: dict[str, Any]) -> int:
    """Total tokens the demo provider reports for this request."""
    return prompt_tokens(body) + count_tokens(reply_text(body))


def estimate(body: dict[str, Any], completion: int) -> int:
    return estimated_prompt(body, 4.0) + completion
