"""A provider's answer is untrusted input, through the real Envoy (exploratory report, findings 1, 17, 20).

Its usage is checked before it settles a quota or reaches the metrics (every provider type,
streamed and whole); its stream oddities (an `event: error`, `choices: null`, a JSON answer to a
stream request) end as the documented errors; clean text an output guardrail held back still
reaches the client before a provider's mid-stream error; and errors retrying cannot fix carry
`x-should-retry: false`, which the OpenAI SDK obeys.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from sidecar.devtools.launcher import Stack
from tests.e2e.faults import FaultyProvider, chat, error_of, start_gateway, write_policies
from tests.e2e.support import DEMO_TOKEN, log_entries, parse_sse

KEY = "api_key: {env: FAULTY_PROVIDER_KEY}"
DAILY = 10_000_000

POLICY = """
providers:
  openai: {{type: openai, base_url: {url}/v1, {key}, breaker: {{enabled: false}}}}
  claude: {{type: anthropic, base_url: {url}, {key}, breaker: {{enabled: false}}}}
  azure: {{type: azure, base_url: {url}, api_version: "2024-10-21", {key}, breaker: {{enabled: false}}}}
models:
  use-openai: {{deployments: [{{provider: openai, model: use-openai}}]}}
  use-claude: {{deployments: [{{provider: claude, model: use-claude}}]}}
  use-azure: {{deployments: [{{provider: azure, model: use-azure}}]}}
  odd: {{deployments: [{{provider: openai, model: odd}}]}}
  odd-azure: {{deployments: [{{provider: azure, model: odd-azure}}]}}
  held: {{deployments: [{{provider: openai, model: held}}]}}
  refused: {{deployments: [{{provider: openai, model: refused}}]}}
  refused-claude: {{deployments: [{{provider: claude, model: refused-claude}}]}}
limits:
  store: {{backend: memory, state_dir: "{state}"}}
  rules:
    daily: {{match: {{models: [use-openai, use-claude, use-azure]}}, per: [model], tokens_per_day: {daily}}}
"""

GUARDRAILS = """
guardrails:
  word-mask:
    type: pattern
    deny_regexes: ['two']
    action: mask
    direction: output
    scope: {models: [held]}
"""

NEGATIVE = {"openai": {"prompt_tokens": -1_000_000, "completion_tokens": -1_000_000, "total_tokens": -2_000_000},
            "claude": {"input_tokens": -1_000_000, "output_tokens": -1_000_000}}
NEGATIVE["azure"] = NEGATIVE["openai"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("untrusted-provider")
    policies = write_policies(workdir / "policies", POLICY.format(url=faulty.url, key=KEY, state=workdir / "state",
                                                                  daily=DAILY))
    (policies / "guardrails.yaml").write_text(GUARDRAILS, encoding="utf-8")
    stack = start_gateway(workdir, policies)
    yield stack
    stack.stop()


def chunks_and_end(raw: bytes) -> tuple[list[dict[str, Any]], list[Any]]:
    """The stream's chunks, then what follows the last chunk (the error event, `[DONE]`)."""
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]", raw[-200:]
    decoded = [json.loads(p) for p in payloads[:-1]]
    cut = next((i for i, p in enumerate(decoded) if "error" in p), len(decoded))
    return decoded[:cut], [*decoded[cut:], "[DONE]"]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def token_metric(stack: Stack, model: str) -> dict[str, float]:
    """gateway_tokens_total and gateway_requests_total samples of `model`, by their other labels."""
    with urllib.request.urlopen(stack.sidecar_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith(("gateway_tokens_total{", "gateway_requests_total{")) and f'model="{model}"' in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def settled(stack: Stack, request_id: str) -> None:
    """Waits for the exchange's access line: its settlement and metrics are done by then."""
    assert await log_entries(stack.workdir, '"msg":"request"', f'"request_id":"{request_id}"'), request_id


async def remaining_after(stack: Stack, model: str, stream: bool, request_id: str) -> int:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
    status, headers, raw = await chat(stack, model, stream=stream, request_id=request_id, **extra)
    assert status == 200, raw
    await settled(stack, request_id)
    return int(headers["x-ratelimit-remaining-tokens"])


# ---- finding 1: a provider's usage ---------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("wire", ["openai", "azure", "claude"])
async def test_negative_usage_gives_no_budget_back_and_reaches_no_metric(
        gw: Stack, faulty: FaultyProvider, wire: str, stream: bool) -> None:
    model = f"use-{wire}"
    tag = f"{wire}-{stream}"
    before = await remaining_after(gw, model, stream, f"neg-before-{tag}")
    metrics_before = token_metric(gw, model)
    faulty.set(model, "ok", usage=NEGATIVE[wire], times=1)
    status, _, raw = await chat(gw, model, stream=stream, request_id=f"neg-{tag}")
    assert status == 200, raw
    await settled(gw, f"neg-{tag}")
    after = await remaining_after(gw, model, stream, f"neg-after-{tag}")
    # Settled by estimate (prompt estimate + answer text / 4), so the budget only goes down; the
    # negative usage used to give 2,000,000 tokens back (one answer wiped a day's use).
    assert 0 < before - after < 100
    metrics_after = token_metric(gw, model)
    requests_200 = next(k for k in metrics_after if k.startswith("gateway_requests_total") and 'status="200"' in k)
    assert metrics_after[requests_200] - metrics_before.get(requests_200, 0) == 2  # the observer did not fail
    assert all(metrics_after[k] >= v for k, v in metrics_before.items() if k.startswith("gateway_tokens_total"))
    warnings = await log_entries(gw.workdir, "provider usage refused", f'"request_id":"neg-{tag}"')
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert "is not a token count: -1000000" in warnings[0]["reason"]
    assert not await log_entries(gw.workdir, "exchange observer failed", timeout=0)
    access = await log_entries(gw.workdir, '"msg":"request"', f'"request_id":"neg-{tag}"')
    assert (access[0]["prompt_tokens"], access[0]["completion_tokens"]) == (None, None)


async def test_absurd_usage_is_refused_like_negative(gw: Stack, faulty: FaultyProvider) -> None:
    before = await remaining_after(gw, "use-openai", False, "absurd-before")
    faulty.set("use-openai", "ok", usage={"prompt_tokens": 2**40, "completion_tokens": True}, times=1)
    status, _, raw = await chat(gw, "use-openai", request_id="absurd")
    assert status == 200, raw
    await settled(gw, "absurd")
    after = await remaining_after(gw, "use-openai", False, "absurd-after")
    assert 0 < before - after < 100  # 2**40 tokens would have used the whole day at once


# ---- finding 20: provider SSE oddities -----------------------------------------------------------

@pytest.mark.parametrize("model", ["odd", "odd-azure"])
async def test_a_provider_error_event_ends_the_stream_as_a_provider_error(
        gw: Stack, faulty: FaultyProvider, model: str) -> None:
    faulty.set(model, "sse_error")
    status, _, raw = await chat(gw, model, stream=True)
    assert status == 200, raw
    chunks, end = chunks_and_end(raw)
    # It used to go out re-stamped as a chunk ({"message", "model", "object"}), and the stream went on.
    assert all(set(c) >= {"id", "object", "created", "model", "choices"} for c in chunks)
    assert text_of(chunks) == "reply from"
    assert end == [{"error": {"message": "Injected SSE error event", "type": "provider_error", "code": None,
                              "param": None}}, "[DONE]"]


async def test_a_chunk_with_null_choices_is_a_bad_provider_stream(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("odd", "null_choices")
    status, _, raw = await chat(gw, "odd", stream=True)
    assert status == 200, raw
    chunks, end = chunks_and_end(raw)
    assert all(isinstance(c["choices"], list) for c in chunks)
    assert text_of(chunks) == "reply from"
    assert end == [{"error": {"message": "Provider sent a malformed stream event: a chunk without a choices list",
                              "type": "provider_error", "code": "bad_provider_stream", "param": None}}, "[DONE]"]


async def test_the_openai_sdk_gets_an_api_error_not_a_broken_chunk(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("odd", "null_choices")
    client = openai.AsyncOpenAI(base_url=gw.base_url + "/api/client/v1", api_key=DEMO_TOKEN, max_retries=0)
    seen: list[str] = []
    async with client:
        stream = await client.chat.completions.create(model="odd", messages=[{"role": "user", "content": "Hi"}],
                                                      stream=True)
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")  # the README's loop
    assert "".join(seen) == "reply from"
    assert caught.value.code == "bad_provider_stream"


async def test_a_stream_answered_with_a_whole_json_answer_says_so(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("odd", "json_answer")
    status, headers, raw = await chat(gw, "odd", stream=True)
    # It was a 200 stream ending in "Provider closed the stream before it finished".
    assert status == 502, raw
    assert headers["content-type"].startswith("application/json")
    assert error_of(raw) == {"message": "Provider answered the stream request with a whole JSON answer, not an "
                                        "event stream", "type": "provider_error", "code": "bad_provider_stream",
                             "param": None}
    assert headers["x-should-retry"] == "false"  # the same provider would answer the same way again


async def test_a_stream_answered_with_a_json_error_is_the_providers_error(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("odd", "json_error", status=503)
    status, headers, raw = await chat(gw, "odd", stream=True)
    assert status == 502, raw
    assert error_of(raw) == {"message": "Injected failure 503 for odd", "type": "server_error",
                             "code": "upstream_503", "param": None}
    assert "x-should-retry" not in headers


# ---- finding 20: clean text held by an output guardrail at a provider error ----------------------

@pytest.mark.parametrize(("mode", "after", "text"), [
    ("error_event", 2, "reply from"),
    ("sse_error", 2, "reply from"),
    ("error_event", 5, "reply from held one [PATTERN_1]"),  # released scanned: the mask applies
    ("reset", 3, "reply from held"),
])
async def test_clean_held_back_text_reaches_the_client_before_the_error(
        gw: Stack, faulty: FaultyProvider, mode: str, after: int, text: str) -> None:
    # The answer is shorter than the guardrail's window, so all of it is held until the end.
    faulty.set("held", mode, after=after, status=500)
    status, _, raw = await chat(gw, "held", stream=True)
    assert status == 200, raw
    chunks, end = chunks_and_end(raw)
    assert text_of(chunks) == text
    assert len(end) == 2 and end[0]["error"]["type"] in ("provider_error", "server_error")


# ---- finding 17: x-should-retry ------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "upstream", "code"), [
    ("refused", 401, "provider_authentication_failed"), ("refused", 403, "provider_permission_denied"),
    ("refused-claude", 401, "provider_authentication_failed"), ("refused", 404, "provider_not_found"),
])
async def test_a_provider_refusing_the_gateways_key_says_do_not_retry(
        gw: Stack, faulty: FaultyProvider, model: str, upstream: int, code: str, stream: bool) -> None:
    faulty.set(model, "status", status=upstream)
    status, headers, raw = await chat(gw, model, stream=stream)
    assert status == 502, raw
    assert error_of(raw)["code"] == code
    assert headers["x-should-retry"] == "false"  # reached the client through Envoy


async def test_the_openai_sdk_does_not_retry_a_rejected_key(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("refused", "status", status=401)
    sent = faulty.count("refused")
    client = openai.AsyncOpenAI(base_url=gw.base_url + "/api/client/v1", api_key=DEMO_TOKEN)  # 2 retries
    async with client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="refused", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 502
    assert faulty.count("refused") - sent == 1  # it sent three before
    # A failure a retry may fix keeps the SDK's retries.
    faulty.set("refused", "status", status=500)
    status, headers, raw = await chat(gw, "refused")
    assert (status, error_of(raw)["code"]) == (502, "upstream_500")
    assert "x-should-retry" not in headers
