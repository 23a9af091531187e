"""Anthropic Messages and Azure OpenAI through the real Envoy, against local servers speaking their wire formats.

Clients speak OpenAI's format only; the faulty provider answers in Anthropic's or Azure's, streamed
and not, with provider errors, and with fallbacks and breakers across the two formats.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from sidecar.devtools.launcher import Stack
from tests.e2e.faults import FaultyProvider, chat, error_of, start_gateway, write_policies
from tests.e2e.support import DEMO_TOKEN, parse_sse

DEPLOYMENT = "x-gateway-deployment"
KEY = "sk-faulty-test-key"  # what tests.e2e.faults puts in FAULTY_PROVIDER_KEY


def policy(url: str, key_file: Path) -> str:
    key = "api_key: {env: FAULTY_PROVIDER_KEY}"
    return f"""
providers:
  claude-file:
    type: anthropic
    base_url: {url}
    api_key: {{file: {key_file}}}
  claude:
    type: anthropic
    base_url: {url}
    {key}
    breaker: {{consecutive_failures: 2, cooldown: 30s}}
  claude-nb:
    type: anthropic
    base_url: {url}
    {key}
    breaker: {{enabled: false}}
  azure:
    type: azure
    base_url: {url}
    api_version: "2024-10-21"
    {key}
    breaker: {{consecutive_failures: 2, cooldown: 30s}}
  azure-nb:
    type: azure
    base_url: {url}
    api_version: "2024-10-21"
    {key}
    breaker: {{enabled: false}}
  azure-nokey:
    type: azure
    base_url: {url}
    api_version: "2024-06-01"
    breaker: {{enabled: false}}
models:
  claude-rotated: {{deployments: [{{provider: claude-file, model: rotated}}]}}
  claude: {{deployments: [{{provider: claude, model: claude-ok, default_max_tokens: 333}}]}}
  claude-errors: {{deployments: [{{provider: claude-nb, model: claude-err}}]}}
  azure: {{deployments: [{{provider: azure, model: gpt4o-ok}}]}}
  azure-errors: {{deployments: [{{provider: azure-nb, model: gpt4o-err}}]}}
  azure-nokey: {{deployments: [{{provider: azure-nokey, model: gpt4o-nokey}}]}}
  claude-then-azure: {{deployments: [{{provider: claude, model: cta-claude}}, {{provider: azure, model: cta-azure}}]}}
  azure-then-claude: {{deployments: [{{provider: azure, model: atc-azure}}, {{provider: claude, model: atc-claude}}]}}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("providers")
    (workdir / "anthropic-key").write_text("sk-ant-first\n", encoding="utf-8")
    stack = start_gateway(workdir, write_policies(workdir / "policies", policy(faulty.url, workdir / "anthropic-key")))
    yield stack
    stack.stop()


def chunks(raw: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(chunks, errors) of a stream that must end with `data: [DONE]`."""
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]", raw[-200:]
    events = [json.loads(p) for p in payloads[:-1]]
    return [e for e in events if "error" not in e], [e["error"] for e in events if "error" in e]


def text_of(stream_chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in stream_chunks if c["choices"])


SYSTEM_AND_USER = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hello there"}]


# ---- Anthropic ----------------------------------------------------------------------------

async def test_anthropic_completion(gw: Stack, faulty: FaultyProvider) -> None:
    status, headers, raw = await chat(gw, "claude", messages=SYSTEM_AND_USER)
    assert status == 200, raw
    body = json.loads(raw)
    assert (body["object"], body["model"]) == ("chat.completion", "claude")
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content":
                                "reply from claude-ok one two three"}, "finish_reason": "stop"}]
    assert body["usage"]["completion_tokens"] == 6
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6
    assert headers[DEPLOYMENT] == "claude/claude-ok"
    sent = faulty.received("claude-ok")[-1]
    assert sent["headers"]["x-api-key"] == KEY and sent["headers"]["anthropic-version"]
    assert "authorization" not in sent["headers"]
    assert sent["body"]["system"] == "Be brief"
    assert sent["body"]["max_tokens"] == 333, "the deployment's default_max_tokens"
    assert [m["role"] for m in sent["body"]["messages"]] == ["user"]


async def test_anthropic_stream(gw: Stack, faulty: FaultyProvider) -> None:
    status, headers, raw = await chat(gw, "claude", stream=True, max_tokens=50,
                                      stream_options={"include_usage": True})
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    got, errors = chunks(raw)
    assert errors == []
    assert got[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(got) == "reply from claude-ok one two three"
    assert all(c["model"] == "claude" and c["object"] == "chat.completion.chunk" for c in got)
    assert [c["choices"][0]["finish_reason"] for c in got if c["choices"]][-1] == "stop"
    assert got[-1]["choices"] == [] and got[-1]["usage"]["completion_tokens"] == 6
    assert faulty.received("claude-ok")[-1]["body"]["max_tokens"] == 50


@pytest.mark.parametrize(("upstream", "status", "error_type", "code"), [
    (400, 400, "invalid_request_error", None),
    (429, 429, "rate_limit_exceeded", "provider_rate_limited"),
    (529, 503, "service_unavailable", "provider_overloaded"),
    (500, 502, "provider_error", "api_error"),
])
async def test_anthropic_errors(gw: Stack, faulty: FaultyProvider, upstream: int, status: int, error_type: str,
                                code: str | None) -> None:
    faulty.set("claude-err", "status", status=upstream)
    got, _, raw = await chat(gw, "claude-errors")
    assert got == status, raw
    error = error_of(raw)
    assert (error["type"], error["code"]) == (error_type, code)
    assert error["message"].endswith(f"Injected failure {upstream} for claude-err")


async def test_anthropic_error_event_mid_stream(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("claude-err", "error_event", status=529, after=2)
    status, _, raw = await chat(gw, "claude-errors", stream=True)
    assert status == 200
    got, errors = chunks(raw)
    assert text_of(got) == "reply from"
    assert [(e["type"], e["code"]) for e in errors] == [("service_unavailable", "provider_overloaded")]


async def test_a_rotated_key_file_is_used_without_a_restart(gw: Stack, faulty: FaultyProvider) -> None:
    assert (await chat(gw, "claude-rotated"))[0] == 200
    assert faulty.received("rotated")[-1]["headers"]["x-api-key"] == "sk-ant-first"
    key_file = gw.workdir / "anthropic-key"
    key_file.write_text("sk-ant-second\n", encoding="utf-8")
    stat = key_file.stat()
    os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    seen = "sk-ant-first"
    for _ in range(40):  # the sidecar re-checks the file at most once a second
        assert (await chat(gw, "claude-rotated"))[0] == 200
        seen = faulty.received("rotated")[-1]["headers"]["x-api-key"]
        if seen == "sk-ant-second":
            break
        await asyncio.sleep(0.1)
    assert seen == "sk-ant-second"
    log = (gw.workdir / "stack.log").read_bytes()
    assert b"sk-ant-first" not in log and b"sk-ant-second" not in log and KEY.encode() not in log


# ---- Azure --------------------------------------------------------------------------------

async def test_azure_completion(gw: Stack, faulty: FaultyProvider) -> None:
    status, headers, raw = await chat(gw, "azure")
    assert status == 200, raw
    body = json.loads(raw)
    assert body["model"] == "azure"
    assert body["choices"][0]["message"]["content"] == "reply from gpt4o-ok one two three"
    assert headers[DEPLOYMENT] == "azure/gpt4o-ok"
    sent = faulty.received("gpt4o-ok")[-1]
    assert sent["headers"]["api-key"] == KEY
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert "model" not in sent["body"], "Azure takes the deployment from the URL"


async def test_azure_stream_drops_the_prompt_filter_preamble(gw: Stack) -> None:
    status, _, raw = await chat(gw, "azure", stream=True, stream_options={"include_usage": True})
    assert status == 200
    got, errors = chunks(raw)
    assert errors == []
    assert got[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"] or c.get("usage") for c in got), "no empty preamble chunk reaches the client"
    assert text_of(got) == "reply from gpt4o-ok one two three"
    assert got[-1]["usage"]["completion_tokens"] == 6


@pytest.mark.parametrize(("upstream", "status", "error_type"), [
    (400, 400, "invalid_request_error"),
    (429, 429, "server_error"),
    (500, 502, "server_error"),
])
async def test_azure_errors(gw: Stack, faulty: FaultyProvider, upstream: int, status: int, error_type: str) -> None:
    faulty.set("gpt4o-err", "status", status=upstream)
    got, _, raw = await chat(gw, "azure-errors")
    assert got == status, raw
    error = error_of(raw)
    assert error["message"] == f"Injected failure {upstream} for gpt4o-err"
    assert error["type"] == error_type, "Azure's own error type is kept"


async def test_azure_rejecting_the_gateway_key_is_not_the_clients_401(gw: Stack) -> None:
    status, _, raw = await chat(gw, "azure-nokey")
    assert status == 502
    error = error_of(raw)
    assert error["type"] == "provider_error"
    assert "gateway's deployment configuration" in error["message"]


# ---- fallbacks and breakers across wire formats -------------------------------------------

async def test_overloaded_anthropic_falls_back_to_azure_then_its_breaker_opens(gw: Stack,
                                                                                faulty: FaultyProvider) -> None:
    faulty.set("cta-claude", "status", status=529)
    served = []
    for stream in (False, True, False, True):
        status, headers, raw = await chat(gw, "claude-then-azure", stream=stream)
        assert status == 200, raw
        served.append(headers[DEPLOYMENT])
        reply = text_of(chunks(raw)[0]) if stream else json.loads(raw)["choices"][0]["message"]["content"]
        assert reply == "reply from cta-azure one two three"
    assert served == ["azure/cta-azure"] * 4
    assert faulty.count("cta-claude") == 2, "after two failures the Anthropic breaker is open"


async def test_failing_azure_falls_back_to_anthropic_streaming(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("atc-azure", "status", status=503)
    status, headers, raw = await chat(gw, "azure-then-claude", stream=True)
    assert status == 200
    assert headers[DEPLOYMENT] == "claude/atc-claude"
    got, errors = chunks(raw)
    assert (text_of(got), errors) == ("reply from atc-claude one two three", [])


async def test_anthropic_failing_mid_stream_does_not_fall_back(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("cta-claude", "ok")
    status, headers, _ = await chat(gw, "claude-then-azure")
    assert headers[DEPLOYMENT] == "azure/cta-azure", "the breaker is still open from the earlier test"
    faulty.set("atc-azure", "ok")
    faulty.set("atc-azure", "reset", after=1)
    before = faulty.count("atc-claude")
    status, headers, raw = await chat(gw, "azure-then-claude", stream=True)
    assert status == 200 and headers[DEPLOYMENT] == "azure/atc-azure"
    got, errors = chunks(raw)
    assert text_of(got) == "reply"
    assert [e["code"] for e in errors] == ["stream_broken"]
    assert faulty.count("atc-claude") == before


async def test_the_openai_sdk_reads_translated_anthropic_answers_and_errors(gw: Stack, faulty: FaultyProvider) -> None:
    client = openai.AsyncOpenAI(base_url=gw.base_url + "/api/client/v1", api_key=DEMO_TOKEN, max_retries=0)
    async with client:
        reply = await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "reply from claude-ok one two three"
        assert reply.usage is not None and reply.usage.completion_tokens == 6
        stream = await client.chat.completions.create(model="claude", stream=True, stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "Hi"}])
        parts = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == "reply from claude-ok one two three"
        assert parts[-1].usage is not None and parts[-1].usage.completion_tokens == 6
        faulty.set("claude-err", "status", status=429)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="claude-errors", messages=[{"role": "user", "content": "Hi"}])
        assert "Injected failure 429" in caught.value.message
