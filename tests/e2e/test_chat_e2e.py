"""A chat completion through the real Envoy, callout and sidecar: raw HTTP and the OpenAI SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import openai
import pytest

from sidecar.devtools.launcher import Stack
from tests.e2e.support import CHAT_PATH, DEMO_TOKEN, chat_body, parse_sse, post_chat, provider_requests


@pytest.fixture
def sdk(gateway: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url + "/api/client/v1", api_key=DEMO_TOKEN, max_retries=0) as client:
        yield client


async def test_completion_has_the_contract_shape(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, gateway.base_url, chat_body("Hello"))
    assert status == 200, raw
    body = json.loads(raw)
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant",
                                "content": "Hello from the demo provider. You said: Hello"}, "finish_reason": "stop"}]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert body["request_id"].startswith("req_")
    assert headers["x-request-id"] == body["request_id"]
    assert headers["Content-Type"].startswith("application/json")


async def test_the_provider_gets_the_upstream_model_and_the_request_id(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, gateway.base_url, chat_body("who", request_id="corr-42"))
    assert status == 200
    assert json.loads(raw)["request_id"] == "corr-42"
    assert headers["x-request-id"] == "corr-42"
    seen = next(r for r in reversed(provider_requests(gateway.demo_provider_url))
                if r["headers"].get("x-request-id") == "corr-42")
    assert seen["body"]["model"] == "demo-gpt-4"
    assert "request_id" not in seen["body"]
    assert not any(k.lower().startswith("x-cgt-") for k in seen["headers"])
    assert "authorization" not in seen["headers"]  # the client's gateway token never reaches the provider


async def test_client_x_request_id_header_is_kept(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, gateway.base_url, chat_body(),
                                               headers={"X-Request-Id": "from-header-7"})
    assert status == 200
    assert headers["x-request-id"] == "from-header-7"
    assert json.loads(raw)["request_id"] == "from-header-7"


async def test_body_request_id_wins_over_header(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, gateway.base_url, chat_body(request_id="body-id"),
                                               headers={"X-Request-Id": "header-id"})
    assert status == 200
    assert headers["x-request-id"] == "body-id" == json.loads(raw)["request_id"]


async def test_stream_is_openai_sse(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, gateway.base_url, chat_body("echo: one two three", stream=True))
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["x-request-id"].startswith("req_")
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "one two three"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in c for c in chunks)  # the client did not ask for usage
    seen = next(r for r in reversed(provider_requests(gateway.demo_provider_url))
                if r["headers"].get("x-request-id") == headers["x-request-id"])
    assert seen["body"]["stream_options"] == {"include_usage": True}  # the gateway asked, for accounting


async def test_stream_usage_chunk_when_asked(gateway: Stack) -> None:
    body = chat_body("echo: a b", stream=True, stream_options={"include_usage": True})
    async with aiohttp.ClientSession() as session:
        status, _, raw = await post_chat(session, gateway.base_url, body)
    assert status == 200
    payloads = parse_sse(raw)
    usage_chunk = json.loads(payloads[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 2
    assert payloads[-1] == "[DONE]"


async def test_client_disconnect_closes_the_provider_stream(gateway: Stack) -> None:
    body = chat_body("slow: " + " ".join(["word"] * 50), stream=True, request_id="disconnect-me")
    async with aiohttp.ClientSession() as session, session.post(gateway.base_url + CHAT_PATH, json=body,
                            headers={"Authorization": f"Bearer {DEMO_TOKEN}"}) as response:
        assert response.status == 200
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"data: ")
        # Leaving the block closes the connection mid-stream.
    for _ in range(50):  # polls for up to 5 s; the provider stream would otherwise run ~10 s
        entry = next(r for r in provider_requests(gateway.demo_provider_url)
                     if r["headers"].get("x-request-id") == "disconnect-me")
        if entry["outcome"] != "started":
            break
        await asyncio.sleep(0.1)
    assert entry["outcome"] == "disconnected"


def test_openai_sdk_sync(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "echo: Paris"}], max_tokens=10, temperature=0.2)
    assert completion.choices[0].message.content == "Paris"
    assert completion.model == "gpt-4"
    assert completion.usage is not None and completion.usage.completion_tokens == 1


def test_openai_sdk_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "echo: The capital"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The capital"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


async def test_openai_sdk_async(gateway: Stack) -> None:
    client = openai.AsyncOpenAI(base_url=gateway.base_url + "/api/client/v1", api_key=DEMO_TOKEN, max_retries=0)
    results = await asyncio.gather(*(
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": f"echo: n{i}"}])
        for i in range(5)))
    assert [r.choices[0].message.content for r in results] == [f"n{i}" for i in range(5)]
    stream = await client.chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "echo: x y"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "x y"
    await client.close()


@pytest.mark.parametrize(("kwargs", "error", "status"), [
    ({"model": "nope"}, openai.NotFoundError, 404),
    ({"model": "text-embedding-3-small"}, openai.UnprocessableEntityError, 422),
    ({"model": "gpt-4", "temperature": 3}, openai.BadRequestError, 400),
])
def test_openai_sdk_errors(sdk: openai.OpenAI, kwargs: dict[str, object], error: type[openai.APIStatusError],
                           status: int) -> None:
    with pytest.raises(error) as raised:
        sdk.chat.completions.create(messages=[{"role": "user", "content": "hi"}], **kwargs)  # type: ignore[call-overload]
    assert raised.value.status_code == status
    assert raised.value.response.headers["x-request-id"]


def test_openai_sdk_bad_token(gateway: Stack) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/api/client/v1", api_key="cgt_wrong", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 401
    assert raised.value.body == {"message": "Invalid API token", "type": "authentication_error",
                                 "code": "invalid_api_key", "param": None}


async def test_demo_policies_work_as_make_run_starts_them(demo_gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, _, raw = await post_chat(session, demo_gateway.base_url, chat_body("echo: hi"))
    assert status == 200
    assert json.loads(raw)["choices"][0]["message"]["content"] == "hi"
