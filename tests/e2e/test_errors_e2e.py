"""Every contract status through the real Envoy: the callout's denials and Envoy's own errors."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from sidecar.devtools.launcher import Stack
from tests.e2e.support import (
    CHAT_PATH,
    DEMO_TOKEN,
    EXPIRED_TOKEN,
    RESTRICTED_TOKEN,
    chat_body,
    post_chat,
)

MSG = [{"role": "user", "content": "hi"}]


async def call(stack: Stack, body: Any = None, **kwargs: Any) -> tuple[int, Any, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, stack.base_url, body, **kwargs)
    assert headers["Content-Type"].startswith("application/json"), raw
    assert headers["x-request-id"], "every error carries the request id"
    return status, headers, json.loads(raw)["error"]


@pytest.mark.parametrize(("token", "headers", "code"), [
    (None, None, "missing_api_key"),
    (None, {"Authorization": f"Basic {DEMO_TOKEN}"}, "invalid_auth_scheme"),
    ("cgt_not_a_real_token", None, "invalid_api_key"),
    ("sk-openai-style", None, "invalid_api_key"),
    (EXPIRED_TOKEN, None, "token_expired"),
])
async def test_401(gateway: Stack, token: str | None, headers: dict[str, str] | None, code: str) -> None:
    status, _, error = await call(gateway, chat_body(), token=token, headers=headers)
    assert status == 401
    assert error["type"] == "authentication_error"
    assert error["code"] == code


async def test_403_model_not_in_the_token_allow_list(gateway: Stack) -> None:
    status, _, error = await call(gateway, chat_body(), token=RESTRICTED_TOKEN)
    assert (status, error["type"], error["param"]) == (403, "permission_error", "model")


async def test_404_unknown_model(gateway: Stack) -> None:
    status, _, error = await call(gateway, {"model": "gpt-17", "messages": MSG})
    assert status == 404
    assert error == {"message": "The model 'gpt-17' does not exist", "type": "invalid_request_error",
                     "code": "model_not_found", "param": "model"}


async def test_422_not_an_llm(gateway: Stack) -> None:
    status, _, error = await call(gateway, {"model": "text-embedding-3-small", "messages": MSG})
    assert (status, error["code"], error["param"]) == (422, "model_not_llm", "model")


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"messages": MSG}, "model", "missing_model"),
    ({"model": "", "messages": MSG}, "model", "invalid_type"),
    ({"model": "gpt-4"}, "messages", "missing_messages"),
    ({"model": "gpt-4", "messages": []}, "messages", "invalid_type"),
    ({"model": "gpt-4", "messages": "hi"}, "messages", "invalid_type"),
    ({"model": "gpt-4", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_role"),
    ({"model": "gpt-4", "messages": [{"role": "user"}]}, "messages[0].content", "missing_content"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
    ({"model": "gpt-4", "messages": MSG, "temperature": 2.5}, "temperature", "invalid_value"),
    ({"model": "gpt-4", "messages": MSG, "temperature": "hot"}, "temperature", "invalid_value"),
    ({"model": "gpt-4", "messages": MSG, "max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"model": "gpt-4", "messages": MSG, "max_tokens": 2.5}, "max_tokens", "invalid_value"),
    ({"model": "gpt-4", "messages": MSG, "max_completion_tokens": -1}, "max_completion_tokens", "invalid_value"),
    ({"model": "gpt-4", "messages": MSG, "stream": "yes"}, "stream", "invalid_type"),
    ({"model": "gpt-4", "messages": MSG, "request_id": "has space"}, "request_id", "invalid_value"),
    ({"model": "gpt-4", "messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id",
     "missing_tool_call_id"),
])
async def test_400_validation(gateway: Stack, body: dict[str, Any], param: str, code: str) -> None:
    status, _, error = await call(gateway, body)
    assert status == 400
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


@pytest.mark.parametrize(("data", "code"), [
    (b'{"model": "gpt-4", "messages": [', "invalid_json"),
    (b'{"model": "gpt-4\xff\xfe", "messages": []}', "invalid_encoding"),
    (b"[1, 2]", "invalid_json"),
    (b"", "invalid_json"),
    (b"[" * 200_000 + b"]" * 200_000, "invalid_json"),
])
async def test_400_unparseable_bodies(gateway: Stack, data: bytes, code: str) -> None:
    status, _, error = await call(gateway, data=data)
    assert (status, error["code"], error["param"]) == (400, code, None)


async def test_a_deeply_nested_body_does_not_take_the_sidecar_down(gateway: Stack) -> None:
    await call(gateway, data=b'{"model": "gpt-4", "messages": ' + b"[" * 500_000 + b"]" * 500_000 + b"}")
    async with aiohttp.ClientSession() as session:
        status, _, _ = await post_chat(session, gateway.base_url, chat_body())
    assert status == 200


async def test_rich_messages_are_accepted(gateway: Stack) -> None:
    body = {"model": "gpt-4", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "user", "content": "echo: ok"},
    ], "max_completion_tokens": 5, "temperature": 0}
    async with aiohttp.ClientSession() as session:
        status, _, raw = await post_chat(session, gateway.base_url, body)
    assert status == 200, raw
    assert json.loads(raw)["choices"][0]["message"]["content"] == "ok"


async def test_denial_carries_the_body_request_id(gateway: Stack) -> None:
    status, headers, _ = await call(gateway, {"model": "nope", "messages": MSG, "request_id": "trace-me"})
    assert status == 404
    assert headers["x-request-id"] == "trace-me"
    status, headers, _ = await call(gateway, {"model": "gpt-4", "messages": MSG, "request_id": "who-am-i"},
                                    token="cgt_unknown")
    assert (status, headers["x-request-id"]) == (401, "who-am-i")


async def test_404_unknown_path_and_405_wrong_method(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.base_url + "/api/client/v1/files") as response:
            assert response.status == 404
            assert response.headers["x-request-id"].startswith("req_")
            assert (await response.json())["error"]["code"] == "unknown_url"
        async with session.get(gateway.base_url + CHAT_PATH) as response:
            assert response.status == 405
            assert response.headers["Allow"] == "POST"
            error = (await response.json())["error"]
            assert (error["code"], error["message"]) == (
                "method_not_allowed", "Method GET is not allowed on this path; use POST")


async def test_413_body_over_the_limit(gateway: Stack) -> None:
    limit = gateway.settings.max_body_bytes
    status, _, error = await call(gateway, data=b"x" * (limit + 1))
    assert (status, error["code"]) == (413, "request_too_large")


async def test_a_body_just_under_the_limit_is_checked_whole(gateway: Stack) -> None:
    filler = "a " * ((gateway.settings.max_body_bytes - 200) // 2)
    body = json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": filler}], "max_tokens": 0})
    assert len(body) < gateway.settings.max_body_bytes
    status, _, error = await call(gateway, data=body.encode())
    # The callout saw the whole body: it found max_tokens at the very end.
    assert (status, error["param"]) == (400, "max_tokens")
