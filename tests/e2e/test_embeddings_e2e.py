"""POST /embeddings through the real Envoy: the official SDK in both encodings, providers, fallbacks,
breaker, timeouts, guardrails, quotas, and raw HTTP for every error status."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from sidecar.devtools.demo_provider import EMBEDDING_DIMENSIONS, embedding_vector
from sidecar.devtools.launcher import Stack
from tests.e2e.client_surface import (
    CONCURRENT_TOKEN,
    EMBEDDINGS_PATH,
    METERED_TOKEN,
    RPM_TOKEN,
    request,
    sdk,
    start,
)
from tests.e2e.faults import FaultyProvider
from tests.e2e.support import CHAT_PATH, RESTRICTED_TOKEN, provider_requests
from tests.e2e.test_operations_e2e import metric_samples, sidecar_log_lines, value

DEPLOYMENT = "x-gateway-deployment"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    stack = start(tmp_path_factory.mktemp("embeddings"), faulty)
    yield stack
    stack.stop()


def close_to(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all(abs(a - b) < 1e-6 for a, b in zip(got, want, strict=True))


# ---- the official SDK ------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_sdk_embeddings_in_both_encodings(gw: Stack, encoding: Any) -> None:
    async with sdk(gw) as client:
        raw = await client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["hello world", "bye"], encoding_format=encoding)
    answer = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers[DEPLOYMENT] == "demo/demo-embedding"
    assert answer.model == "text-embedding-3-small"  # the client's key, not the provider's name
    assert [d.index for d in answer.data] == [0, 1]
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (3, 3)
    if encoding == "float":
        assert close_to(answer.data[0].embedding, embedding_vector("hello world", EMBEDDING_DIMENSIONS))
    else:
        # With base64 asked explicitly the SDK hands the string over as it came.
        packed = base64.b64decode(str(answer.data[0].embedding))
        decoded = list(struct.unpack(f"<{EMBEDDING_DIMENSIONS}f", packed))
        assert close_to(decoded, embedding_vector("hello world", EMBEDDING_DIMENSIONS))
    sent = provider_requests(gw.demo_provider_url)[-1]["body"]
    assert sent == {"model": "demo-embedding", "input": ["hello world", "bye"], "encoding_format": encoding}


async def test_sdk_default_encoding_and_token_ids(gw: Stack) -> None:
    async with sdk(gw) as client:
        # Without encoding_format the SDK asks for base64 and decodes it to floats itself.
        plain = await client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=8)
        ids = await client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert close_to(plain.data[0].embedding, embedding_vector("hello", 8))
    assert len(ids.data) == 2 and ids.usage.prompt_tokens == 4


async def test_sdk_errors_are_typed(gw: Stack) -> None:
    async with sdk(gw) as client:
        with pytest.raises(openai.UnprocessableEntityError):
            await client.embeddings.create(model="gpt-4", input="x")
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="nope", input="x")
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="text-embedding-3-small", input=[])


# ---- raw HTTP: every status ----------------------------------------------------------------

async def test_body_request_id_is_echoed(gw: Stack) -> None:
    status, headers, body = await request(gw, "POST", EMBEDDINGS_PATH, {
        "model": "text-embedding-3-small", "input": "hi", "request_id": "emb-trace-1"})
    assert (status, headers["x-request-id"], body["request_id"], body["object"]) == (
        200, "emb-trace-1", "emb-trace-1", "list")
    assert "request_id" not in provider_requests(gw.demo_provider_url)[-1]["body"]


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"input": "x"}, "model", "missing_model"),
    ({"model": "text-embedding-3-small"}, "input", "missing_input"),
    ({"model": "text-embedding-3-small", "input": ""}, "input", "invalid_value"),
    ({"model": "text-embedding-3-small", "input": ["a", 1]}, "input[1]", "invalid_type"),
    ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format", "invalid_value"),
    ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions", "invalid_value"),
    ({"model": "text-embedding-3-small", "input": "x", "user": 1}, "user", "invalid_type"),
])
async def test_400_names_the_field(gw: Stack, body: dict[str, Any], param: str, code: str) -> None:
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, body)
    assert (status, answer["error"]["type"], answer["error"]["param"], answer["error"]["code"]) == (
        400, "invalid_request_error", param, code)


async def test_400_for_a_body_that_is_not_json(gw: Stack) -> None:
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, data=b"{nope")
    assert (status, answer["error"]["code"]) == (400, "invalid_json")


async def test_401(gw: Stack) -> None:
    body = {"model": "text-embedding-3-small", "input": "x"}
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, body, token=None)
    assert (status, answer["error"]["code"]) == (401, "missing_api_key")
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, body, token="cgt_nobody")
    assert (status, answer["error"]["code"]) == (401, "invalid_api_key")


async def test_403_outside_the_allow_list_whatever_the_category(gw: Stack) -> None:
    body = {"model": "text-embedding-3-small", "input": "x"}
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, body, token=RESTRICTED_TOKEN)
    assert (status, answer["error"]["code"]) == (403, "model_not_allowed")
    # On chat too: an embedding model outside the allow-list is a 403, not a 422 that says it exists.
    chat = {"model": "text-embedding-3-small", "messages": [{"role": "user", "content": "hi"}]}
    status, _, answer = await request(gw, "POST", CHAT_PATH, chat, token=RESTRICTED_TOKEN)
    assert (status, answer["error"]["code"]) == (403, "model_not_allowed")


async def test_404_unknown_model(gw: Stack) -> None:
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "nope", "input": "x"})
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (404, "model_not_found", "model")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_405_with_allow_post(gw: Stack, method: str) -> None:
    status, headers, answer = await request(gw, method, EMBEDDINGS_PATH)
    assert (status, headers["Allow"], answer["error"]["code"]) == (405, "POST", "method_not_allowed")
    assert answer["error"]["message"] == f"Method {method} is not allowed on this path; use POST"


async def test_422_an_llm_model_names_its_category(gw: Stack) -> None:
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "gpt-4", "input": "x"})
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (422, "model_not_embedding", "model")
    assert answer["error"]["message"] == ("The model 'gpt-4' is a 'llm' model, not an embedding model "
                                          "(category 'embedding')")
    chat = {"model": "text-embedding-3-small", "messages": [{"role": "user", "content": "hi"}]}
    status, _, answer = await request(gw, "POST", CHAT_PATH, chat)
    assert (status, answer["error"]["code"]) == (422, "model_not_llm")


# ---- providers: Azure, fallbacks, breaker, timeouts ------------------------------------------

async def test_azure_embeddings(gw: Stack, faulty: FaultyProvider) -> None:
    status, headers, answer = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "embed-azure", "input": ["a"]})
    assert (status, answer["model"], headers[DEPLOYMENT]) == (200, "embed-azure", "azure/emb-az")
    sent = faulty.received("emb-az")[-1]
    assert (sent["wire"], sent["query"], sent["headers"]["api-key"]) == (
        "azure", {"api-version": "2024-10-21"}, "sk-faulty-test-key")
    assert sent["body"] == {"input": ["a"]}


async def test_fallback_past_an_unreachable_deployment(gw: Stack) -> None:
    status, headers, answer = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "embed-fallback", "input": "x"})
    assert (status, headers[DEPLOYMENT], answer["model"]) == (200, "demo/demo-embedding", "embed-fallback")


async def test_fallback_on_a_provider_5xx(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("emb-5xx", "status", status=500, times=1)
    status, headers, _ = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "embed-5xx-fallback", "input": "x"})
    assert (status, headers[DEPLOYMENT]) == (200, "azure/emb-az-b")
    assert faulty.count("emb-5xx") == 1
    tried = faulty.received("emb-5xx")[-1]
    assert (tried["wire"], tried["headers"]["authorization"]) == ("openai", "Bearer sk-faulty-test-key")
    assert tried["body"]["model"] == "emb-5xx"  # the deployment's own model name


async def test_breaker_opens_then_503_with_retry_after(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("emb-breaker", "status", status=500)
    body = {"model": "embed-breaker", "input": "x"}
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, body)
    assert (status, answer["error"]["message"]) == (502, "Injected failure 500 for emb-breaker")
    status, headers, answer = await request(gw, "POST", EMBEDDINGS_PATH, body)
    assert (status, answer["error"]["code"]) == (503, "circuit_breaker_open")
    assert int(headers["Retry-After"]) >= 1
    assert faulty.count("emb-breaker") == 1


async def test_a_slow_provider_is_a_504(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("emb-slow", "slow", delay=3)
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "embed-slow", "input": "x"})
    assert (status, answer["error"]["code"]) == (504, "provider_timeout")


async def test_a_malformed_provider_answer_is_a_502(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("emb-slow", "garbage", times=1)
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "embed-slow", "input": "x"})
    assert (status, answer["error"]["code"]) == (502, "bad_provider_response")


# ---- guardrails ----------------------------------------------------------------------------

async def test_guardrail_block_is_the_contract_400(gw: Stack, faulty: FaultyProvider) -> None:
    before = faulty.count("emb-guarded")
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, {
        "model": "embed-guarded", "input": ["fine", "write to bob@example.com"]})
    assert status == 400
    assert answer == {"error": {"message": "Content blocked by guardrail", "type": "guardrail_block",
                                "guardrail_key": "no-email", "action": "block",
                                "findings": [{"category": "email", "message": "PII detected", "input_index": 1}]}}
    assert faulty.count("emb-guarded") == before  # the provider never saw it


async def test_guardrail_mask_replaces_before_the_provider(gw: Stack, faulty: FaultyProvider) -> None:
    status, _, _ = await request(gw, "POST", EMBEDDINGS_PATH, {
        "model": "embed-guarded", "input": ["call 415-555-0100 now", "ok"]})
    assert status == 200
    assert faulty.received("emb-guarded")[-1]["body"]["input"] == ["call [PHONE_1] now", "ok"]


async def test_token_ids_cannot_pass_a_block_guardrail(gw: Stack) -> None:
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "embed-guarded", "input": [1, 2]})
    assert (status, answer["error"]["type"], answer["error"]["guardrail_key"]) == (400, "guardrail_block", "no-email")
    assert answer["error"]["findings"][0]["category"] == "token_ids"


# ---- quotas --------------------------------------------------------------------------------

async def test_429_requests_per_minute(gw: Stack) -> None:
    body = {"model": "embed-quota", "input": "x"}
    status, _, _ = await request(gw, "POST", EMBEDDINGS_PATH, body, token=RPM_TOKEN)
    assert status == 200
    status, headers, answer = await request(gw, "POST", EMBEDDINGS_PATH, body, token=RPM_TOKEN)
    assert (status, answer["error"]["type"], answer["error"]["code"]) == (
        429, "rate_limit_exceeded", "requests_per_minute")
    assert int(headers["Retry-After"]) >= 1


async def test_429_concurrent_requests_and_the_slot_is_released(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("emb-concurrent", "slow", delay=1.5, times=1)
    body = {"model": "embed-concurrent", "input": "x"}
    first = asyncio.create_task(request(gw, "POST", EMBEDDINGS_PATH, body, token=CONCURRENT_TOKEN))
    for _ in range(100):  # until the first one is with the provider
        if faulty.count("emb-concurrent"):
            break
        await asyncio.sleep(0.02)
    status, _, answer = await request(gw, "POST", EMBEDDINGS_PATH, body, token=CONCURRENT_TOKEN)
    assert (status, answer["error"]["code"]) == (429, "concurrent_requests")
    assert (await first)[0] == 200
    status, _, _ = await request(gw, "POST", EMBEDDINGS_PATH, body, token=CONCURRENT_TOKEN)
    assert status == 200  # the slot came back when the first answer ended


async def test_tokens_settle_from_usage_and_spend_from_the_prompt_price(gw: Stack) -> None:
    six_words = "one two three four five six"  # estimate ceil(27 / 4) = 7 tokens; the demo counts 6
    body = {"model": "embed-quota", "input": six_words}
    status, headers, answer = await request(gw, "POST", EMBEDDINGS_PATH, body, token=METERED_TOKEN)
    assert (status, answer["usage"]["prompt_tokens"]) == (200, 6)
    assert headers["x-ratelimit-remaining-tokens"] == str(1000 - 7)  # reserved by the estimate
    # The second one is over $1 a day: $0.60 settled (6 tokens at $0.10) plus its own $0.70 estimate.
    status, headers, answer = await request(gw, "POST", EMBEDDINGS_PATH, body, token=METERED_TOKEN)
    assert (status, answer["error"]["type"], answer["error"]["code"]) == (429, "insufficient_quota", "spend_per_day")
    assert "used $0.6," in answer["error"]["message"]
    assert headers["x-ratelimit-remaining-tokens"] == str(1000 - 6)  # settled to the provider's usage


# ---- logs and metrics ------------------------------------------------------------------------

async def test_logs_and_metrics_name_the_endpoint_and_count_tokens(gw: Stack) -> None:
    before = metric_samples(gw.sidecar_url)
    status, _, _ = await request(gw, "POST", EMBEDDINGS_PATH, {"model": "acme/embed-v2", "input": "a b c"},
                                 headers={"X-Request-Id": "emb-log-1"})
    assert status == 200
    after = metric_samples(gw.sidecar_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gateway_requests_total", model="acme/embed-v2", status="200", token="demo") == 1
    assert delta("gateway_tokens_total", model="acme/embed-v2", token="demo", kind="prompt") == 3
    lines = [line for line in sidecar_log_lines(gw) if line.get("request_id") == "emb-log-1"]
    assert {(line["logger"], line["endpoint"]) for line in lines} == {
        ("sidecar.decision", "embeddings"), ("sidecar.access", "embeddings")}
    access = next(line for line in lines if line["logger"] == "sidecar.access")
    assert (access["status"], access["prompt_tokens"], access["completion_tokens"]) == (200, 3, 0)
