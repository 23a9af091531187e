"""The forwarding endpoint end to end in-process: real app, provider mocked with aioresponses."""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses, core
from yarl import URL

from sidecar.app import init_app
from sidecar.appkeys import POLICY_STORE
from sidecar.callout.endpoint import AUTHZ_PREFIX
from sidecar.callout.handoff import DECISION_HEADER, Decision, body_digest, encode
from sidecar.core.endpoints import CHAT_PATH
from sidecar.core.tokens import hash_token
from sidecar.forward.exchange import DEPLOYMENT_HEADER
from sidecar.settings import Settings

KEY = b"k" * 32
TOKEN = "cgt_unit_forwarding_token"
PROVIDER_URL = "http://provider.test/v1/chat/completions"
DEPLOYMENT = "main/gpt-4-upstream"

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(f"""\
providers:
  main:
    type: openai
    base_url: http://provider.test/v1
    timeouts: {{connect: 1s, first_byte: 1s, idle: 1s, total: 5s}}
models:
  gpt-4:
    deployments:
      - {{provider: main, model: gpt-4-upstream}}
tokens:
  t:
    sha256: {hash_token(TOKEN)}
    team: blue
""")
    return tmp_path


@pytest.fixture
async def client(aiohttp_client: ClientFactory, policy_dir: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = init_app(Settings(policies_dir=policy_dir, decision_key=KEY))
    yield await aiohttp_client(app)


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds ClientResponse without the `stream_writer` that aiohttp 3.14 requires."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
        super().__init__(method, url, **kwargs)


_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    if _NEEDS_STREAM_WRITER:
        monkeypatch.setattr(core, "ClientResponse", _CompatResponse)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        yield mocked


Signer = Callable[[bytes], str]


def decision_header(client: TestClient[Any, Any], *, stream: bool = False, wants_usage: bool = False,
                    request_id: str = "req_unit_1", key: bytes = KEY) -> Signer:
    """The decision header the callout would give for a body (bound to its digest, live 10 s)."""
    version = client.app[POLICY_STORE].current.version

    def sign(raw: bytes) -> str:
        decision = Decision(request_id=request_id, token_name="t", team="blue", model_key="gpt-4",
                            deployments=(DEPLOYMENT,), stream=stream, client_wants_usage=wants_usage,
                            policy_version=version, body_sha256=body_digest(raw), expires_at=time.time() + 10)
        return encode(decision, key)

    return sign


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], **fields}


async def post(client: TestClient[Any, Any], body: dict[str, Any], header: Signer | None) -> aiohttp.ClientResponse:
    headers = {"X-Request-Id": "req_unit_1"}
    raw = orjson.dumps(body)
    if header is not None:
        headers[DECISION_HEADER] = header(raw)
    return await client.post(CHAT_PATH, data=raw, headers=headers)


def upstream_calls(provider: aioresponses) -> list[dict[str, Any]]:
    calls = provider.requests.get(("POST", URL(PROVIDER_URL)), [])
    return [{"body": orjson.loads(call.kwargs["data"]), "headers": call.kwargs["headers"]} for call in calls]


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/json"
    assert response.headers["X-Request-Id"] == "req_unit_1"
    payload: dict[str, Any] = await response.json()
    assert set(payload) == {"error"}
    error: dict[str, Any] = payload["error"]
    return error


COMPLETION = {
    "id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000, "model": "gpt-4-upstream",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events
    )


def stream_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4-upstream", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


USAGE_CHUNK = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1700000000,
               "model": "gpt-4-upstream", "choices": [],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def data_lines(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order (keepalive comments ignored)."""
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


# ---- non-streamed ----------------------------------------------------------------------------

async def test_non_streamed_success(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, payload=COMPLETION)
    response = await post(client, chat_body(request_id="req_unit_1", temperature=0.5), decision_header(client))
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "req_unit_1"
    assert response.headers[DEPLOYMENT_HEADER] == DEPLOYMENT
    assert await response.json() == {**COMPLETION, "model": "gpt-4", "request_id": "req_unit_1"}
    (call,) = upstream_calls(provider)
    assert call["body"] == {"model": "gpt-4-upstream", "messages": [{"role": "user", "content": "hi"}],
                            "temperature": 0.5}
    assert call["headers"]["X-Request-Id"] == "req_unit_1"
    assert "Authorization" not in call["headers"]


async def test_non_streamed_sends_the_provider_credential(
    client: TestClient[Any, Any], provider: aioresponses, policy_dir: Path, monkeypatch: pytest.MonkeyPatch,
    aiohttp_client: ClientFactory,
) -> None:
    policy = policy_dir / "policy.yaml"
    policy.write_text(policy.read_text().replace(
        "    base_url: http://provider.test/v1\n",
        "    base_url: http://provider.test/v1\n    api_key: {env: UNIT_FWD_KEY}\n",
    ))
    monkeypatch.setenv("UNIT_FWD_KEY", "sk-upstream")
    keyed = await aiohttp_client(init_app(Settings(policies_dir=policy_dir, decision_key=KEY)))
    provider.post(PROVIDER_URL, payload=COMPLETION)
    response = await post(keyed, chat_body(), decision_header(keyed))
    assert response.status == 200
    (call,) = upstream_calls(provider)
    assert call["headers"]["Authorization"] == "Bearer sk-upstream"


async def test_provider_400_passed_through(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=400, payload={"error": {
        "message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
        "code": "context_length_exceeded", "param": "messages"}})
    error = await error_of(await post(client, chat_body(), decision_header(client)), 400)
    assert error == {"message": "This model's maximum context length is 8192 tokens.",
                     "type": "invalid_request_error", "code": "context_length_exceeded", "param": "messages"}


async def test_provider_429_keeps_its_status(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=429, payload={"error": {"message": "Rate limit", "type": "requests"}})
    error = await error_of(await post(client, chat_body(), decision_header(client)), 429)
    assert (error["message"], error["type"]) == ("Rate limit", "requests")


async def test_provider_500_becomes_502(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=500, payload={"error": {"message": "The server had an error"}})
    response = await post(client, chat_body(), decision_header(client))
    error = await error_of(response, 502)
    assert error == {"message": "The server had an error", "type": "provider_error", "code": None, "param": None}
    assert response.headers[DEPLOYMENT_HEADER] == DEPLOYMENT


async def test_provider_500_without_json_becomes_502(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=503, body="upstream down")
    error = await error_of(await post(client, chat_body(), decision_header(client)), 502)
    assert (error["message"], error["type"]) == ("Provider returned HTTP 503", "provider_error")


async def test_provider_connection_error_is_502(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, exception=aiohttp.ClientConnectionError("connection refused"))
    error = await error_of(await post(client, chat_body(), decision_header(client)), 502)
    assert error["code"] == "provider_unreachable"
    assert error["type"] == "provider_error"
    assert error["message"] == "Provider unreachable: ClientConnectionError"


async def test_provider_timeout_is_504(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, exception=TimeoutError())
    error = await error_of(await post(client, chat_body(), decision_header(client)), 504)
    assert error == {"message": "Provider timed out", "type": "timeout", "code": "provider_timeout", "param": None}


async def test_provider_non_json_body_is_502(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=200, body="<html>gateway</html>", content_type="text/html")
    error = await error_of(await post(client, chat_body(), decision_header(client)), 502)
    assert error["code"] == "bad_provider_response"
    assert error["message"] == "Provider returned a response that is not JSON"


@pytest.mark.parametrize("payload", [{"choices": ["oops"]}, {"choices": None}, {"choices": [{"message": "hi"}]}])
async def test_provider_malformed_completion_is_502(client: TestClient[Any, Any], provider: aioresponses,
                                                   payload: dict[str, Any]) -> None:
    provider.post(PROVIDER_URL, status=200, payload=payload)
    error = await error_of(await post(client, chat_body(), decision_header(client)), 502)
    assert (error["code"], error["message"]) == ("bad_provider_response", "Provider returned a malformed completion")


# ---- streamed --------------------------------------------------------------------------------

async def test_streamed_success(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=200, content_type="text/event-stream", body=sse(
        stream_chunk({"content": "Hel"}), stream_chunk({"content": "lo"}), stream_chunk({}, "stop"),
        USAGE_CHUNK, "[DONE]",
    ))
    response = await post(client, chat_body(stream=True), decision_header(client, stream=True))
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    assert response.headers["X-Request-Id"] == "req_unit_1"
    assert response.headers[DEPLOYMENT_HEADER] == DEPLOYMENT
    payloads = data_lines(await response.text())
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert [c["choices"][0]["delta"] for c in chunks[1:]] == [{"content": "Hel"}, {"content": "lo"}, {}]
    assert {c["model"] for c in chunks} == {"gpt-4"}
    assert all("usage" not in c for c in chunks)  # client did not ask: the usage chunk is dropped
    (call,) = upstream_calls(provider)
    # Accounting always asks the provider for usage.
    assert call["body"]["stream_options"] == {"include_usage": True}
    assert call["body"]["model"] == "gpt-4-upstream"


async def test_streamed_usage_kept_when_asked(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=200, content_type="text/event-stream", body=sse(
        stream_chunk({"role": "assistant", "content": ""}), stream_chunk({"content": "Hi"}), USAGE_CHUNK, "[DONE]",
    ))
    body = chat_body(stream=True, stream_options={"include_usage": True})
    response = await post(client, body, decision_header(client, stream=True, wants_usage=True))
    payloads = data_lines(await response.text())
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert len(chunks) == 3  # the provider's own role chunk, no extra one
    assert chunks[-1]["usage"] == USAGE_CHUNK["usage"]
    assert chunks[-1]["model"] == "gpt-4"


async def test_stream_cut_without_done(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=200, content_type="text/event-stream",
                  body=sse(stream_chunk({"role": "assistant", "content": "Hel"})))
    response = await post(client, chat_body(stream=True), decision_header(client, stream=True))
    assert response.status == 200
    payloads = data_lines(await response.text())
    assert payloads[-1] == "[DONE]"
    assert orjson.loads(payloads[0])["choices"][0]["delta"]["content"] == "Hel"
    assert orjson.loads(payloads[-2]) == {"error": {
        "message": "Provider closed the stream before it finished", "type": "provider_error",
        "code": "stream_truncated", "param": None}}
    assert len(payloads) == 3


async def test_stream_error_event_from_provider(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=200, content_type="text/event-stream", body=sse(
        stream_chunk({"role": "assistant", "content": "a"}), {"error": {"message": "overloaded", "type": "server"}},
    ))
    response = await post(client, chat_body(stream=True), decision_header(client, stream=True))
    payloads = data_lines(await response.text())
    assert payloads[-1] == "[DONE]"
    assert orjson.loads(payloads[-2])["error"]["message"] == "overloaded"


async def test_stream_provider_error_status_is_json(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, status=400, payload={"error": {"message": "Invalid 'messages'",
                                                               "type": "invalid_request_error"}})
    response = await post(client, chat_body(stream=True), decision_header(client, stream=True))
    error = await error_of(response, 400)
    assert error["message"] == "Invalid 'messages'"


@pytest.mark.parametrize(("status", "code"), [(401, "provider_authentication_failed"),
                                              (403, "provider_permission_denied")])
async def test_openai_compatible_provider_rejecting_the_gateway_key_is_a_502(
        client: TestClient[Any, Any], provider: aioresponses, status: int, code: str) -> None:
    # The client's own token already passed the callout: a 401 would tell it the wrong story.
    provider.post(PROVIDER_URL, status=status, payload={"error": {"message": "Incorrect API key provided",
                                                                  "type": "invalid_request_error"}})
    response = await post(client, chat_body(stream=True), decision_header(client, stream=True))
    error = await error_of(response, 502)
    assert error == {"message": "The provider rejected the gateway's deployment configuration (not your API key): "
                                "Incorrect API key provided", "type": "provider_error", "code": code, "param": None}


async def test_stream_connection_error_is_json_502(client: TestClient[Any, Any], provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, exception=aiohttp.ClientConnectionError())
    response = await post(client, chat_body(stream=True), decision_header(client, stream=True))
    assert (await error_of(response, 502))["code"] == "provider_unreachable"


# ---- the decision header ---------------------------------------------------------------------

async def test_missing_decision_header_is_403(client: TestClient[Any, Any], provider: aioresponses) -> None:
    error = await error_of(await post(client, chat_body(), None), 403)
    assert error == {"message": "Requests must pass the gateway's policy check", "type": "permission_error",
                     "code": "missing_decision", "param": None}
    assert upstream_calls(provider) == []


async def test_forged_decision_header_is_403(client: TestClient[Any, Any], provider: aioresponses) -> None:
    forged = decision_header(client, key=b"x" * 32)
    error = await error_of(await post(client, chat_body(), forged), 403)
    assert error["code"] == "missing_decision"
    assert upstream_calls(provider) == []


async def test_unknown_deployment_is_503(client: TestClient[Any, Any], provider: aioresponses) -> None:
    version = client.app[POLICY_STORE].current.version

    def sign(raw: bytes) -> str:
        return encode(Decision(request_id="req_unit_1", token_name="t", team=None, model_key="gpt-4",
                               deployments=("gone/model",), stream=False, client_wants_usage=False,
                               policy_version=version, body_sha256=body_digest(raw), expires_at=time.time() + 10),
                      KEY)

    error = await error_of(await post(client, chat_body(), sign), 503)
    assert error["code"] == "no_deployment"
    assert upstream_calls(provider) == []


# ---- callout then forwarding -----------------------------------------------------------------

async def test_callout_decision_is_accepted_by_forwarding(client: TestClient[Any, Any],
                                                          provider: aioresponses) -> None:
    body = orjson.dumps(chat_body(request_id="req_from_body"))
    check = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=body,
                              headers={"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req_hdr"})
    assert check.status == 200
    assert check.headers["X-Request-Id"] == "req_from_body"
    header = check.headers[DECISION_HEADER]
    assert re.fullmatch(r"v2\.[A-Za-z0-9_-]+\.[A-Za-z0-9_=-]+", header)
    provider.post(PROVIDER_URL, payload=COMPLETION)
    response = await client.post(CHAT_PATH, data=body, headers={DECISION_HEADER: header})
    assert response.status == 200
    assert (await response.json())["request_id"] == "req_from_body"
    (call,) = upstream_calls(provider)
    assert "request_id" not in call["body"]


async def test_callout_denial_is_openai_json(client: TestClient[Any, Any]) -> None:
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=orjson.dumps(chat_body()),
                                 headers={"X-Request-Id": "req_unit_1"})
    error = await error_of(response, 401)
    assert error["code"] == "missing_api_key"
    assert DECISION_HEADER not in response.headers
