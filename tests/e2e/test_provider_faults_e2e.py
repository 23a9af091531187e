"""Provider behaviours users met through the gateway (issue 15), through the real Envoy.

A provider's 429 keeps its back-off headers (chat and embeddings); old Azure api-versions get no `stream_options`;
Anthropic answers `response_format` with JSON and refuses what it cannot carry; a provider's own
401/403 is a 502 for every provider type; a token budget caps the provider at what it reserved.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from sidecar.core.tokens import hash_token
from sidecar.devtools.launcher import Stack
from tests.e2e.client_surface import EMBEDDINGS_PATH
from tests.e2e.faults import FaultyProvider, chat, error_of, start_gateway, write_policies
from tests.e2e.support import DEMO_TOKEN, auth, parse_sse

KEY = "api_key: {env: FAULTY_PROVIDER_KEY}"
BUDGET = 5000
SCHEMA = {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": {
    "type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"]}}}


def policy(url: str, state_dir: Path) -> str:
    return f"""
providers:
  openai: {{type: openai, base_url: {url}/v1, {KEY}, breaker: {{enabled: false}}}}
  claude: {{type: anthropic, base_url: {url}, {KEY}, breaker: {{enabled: false}}}}
  azure-old: {{type: azure, base_url: {url}, api_version: "2024-06-01", {KEY}}}
  azure-new: {{type: azure, base_url: {url}, api_version: "2024-10-21", {KEY}}}
models:
  limited: {{deployments: [{{provider: openai, model: limited}}]}}
  limited-claude: {{deployments: [{{provider: claude, model: limited-claude}}]}}
  limited-quota: {{deployments: [{{provider: openai, model: limited-quota}}]}}
  limited-embed: {{category: embedding, deployments: [{{provider: openai, model: limited-embed}}]}}
  rejected: {{deployments: [{{provider: openai, model: rejected}}]}}
  claude: {{deployments: [{{provider: claude, model: claude-json}}]}}
  azure-old: {{deployments: [{{provider: azure-old, model: old-dep}}]}}
  azure-new: {{deployments: [{{provider: azure-new, model: new-dep}}]}}
  budget: {{deployments: [{{provider: openai, model: long-answer}}]}}
  budget-claude: {{deployments: [{{provider: claude, model: long-claude}}]}}
limits:
  store: {{backend: memory, state_dir: "{state_dir}"}}
  rules:
    daily: {{match: {{models: [budget, budget-claude]}}, per: [model], tokens_per_day: {BUDGET}}}
    rpm: {{match: {{models: [limited-quota, limited-embed]}}, requests_per_minute: 1000}}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("provider-faults")
    folder = write_policies(workdir / "policies", policy(faulty.url, workdir / "state"))
    (folder / "tokens.yaml").write_text(f"tokens:\n  demo:\n    sha256: {hash_token(DEMO_TOKEN)}\n", encoding="utf-8")
    stack = start_gateway(workdir, folder)
    yield stack
    stack.stop()


def stream_chunks(raw: bytes) -> list[dict[str, Any]]:
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]", raw[-200:]
    return [json.loads(p) for p in payloads[:-1]]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# ---- a provider's 429 ---------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_a_providers_429_keeps_retry_after_and_rate_limit_headers(gw: Stack, faulty: FaultyProvider,
                                                                        stream: bool) -> None:
    faulty.set("limited", "status", status=429)
    status, headers, raw = await chat(gw, "limited", stream=stream)
    assert status == 429, raw
    assert (headers["retry-after"], headers["x-ratelimit-remaining-requests"]) == ("7", "0")
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-reset-requests"]) == ("60", "7s")
    assert headers["x-request-id"]


async def test_a_providers_429_never_duplicates_the_gateways_own_rate_limit_headers(
        gw: Stack, faulty: FaultyProvider) -> None:
    # Envoy appends the gateway's own x-ratelimit-* (its quotas) to every answer; two values of one
    # header would read as "0, 999".
    faulty.set("limited-quota", "status", status=429)
    status, headers, raw = await chat(gw, "limited-quota")
    assert status == 429, raw
    assert headers.getall("retry-after") == ["7"]
    assert headers.getall("x-ratelimit-limit-requests") == ["1000"]
    assert len(headers.getall("x-ratelimit-remaining-requests")) == 1


async def test_an_embeddings_429_keeps_retry_after_like_chat(gw: Stack, faulty: FaultyProvider) -> None:
    # The same relay rule as chat: the provider's back-off headers, none the gateway's quota sends twice.
    faulty.set("limited-embed", "status", status=429)
    async with aiohttp.ClientSession() as session, session.post(
            gw.base_url + EMBEDDINGS_PATH, json={"model": "limited-embed", "input": "hi"}, headers=auth()) as response:
        status, headers, raw = response.status, response.headers, await response.read()
    assert status == 429, raw
    assert error_of(raw)["code"] == "upstream_429"  # the provider's own error, relayed
    assert headers.getall("retry-after") == ["7"]
    assert headers.getall("x-ratelimit-limit-requests") == ["1000"]
    assert len(headers.getall("x-ratelimit-remaining-requests")) == 1


async def test_anthropics_429_headers_reach_the_openai_sdk(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("limited-claude", "status", status=429)
    client = openai.AsyncOpenAI(base_url=gw.base_url + "/api/client/v1", api_key=DEMO_TOKEN, max_retries=0)
    async with client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="limited-claude", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


# ---- a provider's own 401/403 -------------------------------------------------------------------

@pytest.mark.parametrize(("upstream", "code"), [(401, "provider_authentication_failed"),
                                                (403, "provider_permission_denied")])
async def test_an_openai_compatible_providers_401_403_is_a_502_not_the_clients(
        gw: Stack, faulty: FaultyProvider, upstream: int, code: str) -> None:
    faulty.set("rejected", "status", status=upstream)
    status, _, raw = await chat(gw, "rejected")
    assert status == 502, raw
    error = error_of(raw)
    assert (error["type"], error["code"]) == ("provider_error", code)
    assert error["message"].startswith("The provider rejected the gateway's deployment configuration (not your API key)")


# ---- stream usage per deployment ----------------------------------------------------------------

async def test_an_old_azure_api_version_streams_without_stream_options(gw: Stack, faulty: FaultyProvider) -> None:
    asks: tuple[dict[str, Any], ...] = ({}, {"stream_options": {"include_usage": True}})
    for asked in asks:
        status, _, raw = await chat(gw, "azure-old", stream=True, **asked)
        assert status == 200, raw
        chunks = stream_chunks(raw)
        assert content_of(chunks) == "reply from old-dep one two three"
        assert not any(c.get("usage") for c in chunks), "this deployment cannot report stream usage"
        assert "stream_options" not in faulty.received("old-dep")[-1]["body"]


async def test_a_newer_azure_api_version_is_asked_for_stream_usage(gw: Stack, faulty: FaultyProvider) -> None:
    status, _, raw = await chat(gw, "azure-new", stream=True, stream_options={"include_usage": True})
    assert status == 200, raw
    assert stream_chunks(raw)[-1]["usage"]["completion_tokens"] == 6
    assert faulty.received("new-dep")[-1]["body"]["stream_options"] == {"include_usage": True}


# ---- Anthropic response_format ------------------------------------------------------------------

@pytest.mark.parametrize("response_format", [SCHEMA, {"type": "json_object"}])
async def test_anthropic_answers_response_format_with_json(gw: Stack, faulty: FaultyProvider,
                                                           response_format: dict[str, Any]) -> None:
    status, _, raw = await chat(gw, "claude", response_format=response_format)
    assert status == 200, raw
    choice = json.loads(raw)["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"reply": "reply from claude-json one two three"}
    assert (choice["finish_reason"], "tool_calls" in choice["message"]) == ("stop", False)
    sent = faulty.received("claude-json")[-1]["body"]
    assert sent["tool_choice"] == {"type": "tool", "name": sent["tools"][0]["name"]}


async def test_anthropic_streams_response_format_json(gw: Stack) -> None:
    status, _, raw = await chat(gw, "claude", stream=True, response_format=SCHEMA)
    assert status == 200, raw
    chunks = stream_chunks(raw)
    assert json.loads(content_of(chunks)) == {"reply": "reply from claude-json one two three"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


@pytest.mark.parametrize(("field", "value"), [("seed", 7), ("logprobs", True), ("frequency_penalty", 0.5),
                                              ("n", 2)])
async def test_anthropic_refuses_what_it_cannot_carry_by_name(gw: Stack, field: str, value: Any) -> None:
    status, _, raw = await chat(gw, "claude", **{field: value})
    assert status == 400, raw
    error = error_of(raw)
    assert (error["param"], error["code"]) == (field, "unsupported_for_provider")


# ---- a budget caps the provider -----------------------------------------------------------------

@pytest.mark.parametrize(("model", "upstream", "cap_field"), [("budget", "long-answer", "max_tokens"),
                                                               ("budget-claude", "long-claude", "max_tokens")])
async def test_concurrent_requests_without_max_tokens_stay_within_the_daily_budget(
        gw: Stack, faulty: FaultyProvider, model: str, upstream: str, cap_field: str) -> None:
    faulty.set(upstream, "long")  # writes 3,000 tokens unless told less
    results = await asyncio.gather(*[chat(gw, model, content="write a lot") for _ in range(8)])
    statuses = [status for status, _, _ in results]
    assert 200 in statuses and set(statuses) <= {200, 429}
    used = sum(json.loads(raw)["usage"]["total_tokens"] for status, _, raw in results if status == 200)
    assert used <= BUDGET, f"{used} tokens counted against a budget of {BUDGET}"
    caps = [r["body"][cap_field] for r in faulty.received(upstream)]
    assert max(caps) == 1024 and all(1 <= cap <= 1024 for cap in caps), caps
