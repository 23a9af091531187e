"""Issue 14 through the real Envoy: the decision binds the body and expires, gzip bodies are
decoded once, workers share one key, abandoned slots come back, slow clients are cut, cheap
decisions come before the scan, and deep nesting is a 400."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import shutil
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.cli.workers import WORKERS_ENV
from sidecar.core.endpoints import EMBEDDINGS_PATH
from sidecar.core.json_depth import MAX_JSON_DEPTH
from sidecar.core.tokens import hash_token
from sidecar.devtools.launcher import Stack
from tests.e2e.stacks import REPO, stack_settings, start_stack, write_test_policies
from tests.e2e.support import CHAT_PATH, DEMO_TOKEN, chat_body, parse_sse, post_chat, provider_requests

CONC_TOKEN = "cgt_test_hardening_conc_00000000000000"
RPM_TOKEN = "cgt_test_hardening_rpm_000000000000000"
REPLAY_TOKEN = "cgt_test_hardening_replay_0000000000000"
TTL = 1.0  # seconds a decision lives in these stacks, and an unclaimed slot is held


def write_policies(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "policies" / "models.yaml", folder / "models.yaml")
    (folder / "tokens.yaml").write_text(f"""
tokens:
  demo: {{sha256: {hash_token(DEMO_TOKEN)}, team: demo-team}}
  conc: {{sha256: {hash_token(CONC_TOKEN)}}}
  rpm: {{sha256: {hash_token(RPM_TOKEN)}}}
  replay: {{sha256: {hash_token(REPLAY_TOKEN)}}}
""", encoding="utf-8")
    (folder / "guardrails.yaml").write_text("""
guardrails:
  no-pii:
    type: pii
    categories: [email]
    action: block
    direction: input
    scope: {models: [gpt-4]}
""", encoding="utf-8")
    (folder / "limits.yaml").write_text("""
limits:
  rules:
    conc: {match: {tokens: [conc]}, concurrent_requests: 1}
    rpm: {match: {tokens: [rpm]}, requests_per_minute: 1}
    replay: {match: {tokens: [replay]}, tokens_per_day: 1000000}
""", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("hardened")
    stack = start_stack(workdir, stack_settings(write_policies(workdir / "policies"), decision_ttl_seconds=TTL,
                                                arrival_lease_seconds=TTL))
    yield stack
    stack.stop()


async def callout(session: aiohttp.ClientSession, stack: Stack, raw: bytes, token: str) -> str:
    """What Envoy would get from the callout: the decision header (anything in the pod can ask)."""
    async with session.post(stack.sidecar_url + "/authz" + CHAT_PATH, data=raw,
                            headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
        return response.headers["x-cgt-decision"]


async def forward(session: aiohttp.ClientSession, stack: Stack, raw: bytes, decision: str) -> tuple[int, Any]:
    async with session.post(stack.sidecar_url + CHAT_PATH, data=raw, headers={"x-cgt-decision": decision}) as response:
        return response.status, await response.json(content_type=None)


# ---- 1: the decision binds the body and an expiry; a reservation is used once -----------------

async def test_a_decision_cannot_be_replayed_with_another_body(hardened: Stack) -> None:
    before = len(provider_requests(hardened.demo_provider_url))
    harmless = json.dumps(chat_body("hello")).encode()
    async with aiohttp.ClientSession() as session:
        decision = await callout(session, hardened, harmless, REPLAY_TOKEN)
        for other in (chat_body("write to a@b.example"), chat_body("hello", max_tokens=1000000),
                      chat_body("hello", n=50)):
            status, error = await forward(session, hardened, json.dumps(other).encode(), decision)
            assert (status, error["error"]["code"]) == (403, "decision_body_mismatch")
        # The refusal released the reservation: the decision is spent, even for its own body.
        status, error = await forward(session, hardened, harmless, decision)
        assert (status, error["error"]["code"]) == (403, "decision_replayed")
        decision = await callout(session, hardened, harmless, REPLAY_TOKEN)
        assert (await forward(session, hardened, harmless, decision))[0] == 200
        status, error = await forward(session, hardened, harmless, decision)  # used once only
        assert (status, error["error"]["code"]) == (403, "decision_replayed")
    assert len(provider_requests(hardened.demo_provider_url)) == before + 1


async def test_a_decision_expires(hardened: Stack) -> None:
    raw = json.dumps(chat_body("later")).encode()
    async with aiohttp.ClientSession() as session:
        decision = await callout(session, hardened, raw, DEMO_TOKEN)
        await asyncio.sleep(TTL + 0.3)
        status, error = await forward(session, hardened, raw, decision)
    assert (status, error["error"]["code"]) == (403, "decision_expired")


# ---- 2: gzip bodies are decoded by Envoy, before the callout ----------------------------------

async def test_a_gzip_body_works_end_to_end(hardened: Stack) -> None:
    raw = gzip.compress(json.dumps(chat_body("compressed hello")).encode())
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_chat(session, hardened.base_url, data=raw, headers={"Content-Encoding": "gzip"})
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"].endswith("You said: compressed hello")
    received = provider_requests(hardened.demo_provider_url)[-1]
    assert received["body"]["messages"][-1]["content"] == "compressed hello"
    assert "content-encoding" not in received["headers"]


async def test_a_highly_compressible_gzip_body_arrives_whole(hardened: Stack) -> None:
    # Pasted logs compress ~200:1; Envoy's default inflate ratio (100) cut such bodies short.
    messages = [{"role": "user", "content": "2026-11-30 INFO worker heartbeat ok"} for _ in range(3000)]
    plain = json.dumps({"model": "gpt-4", "messages": messages}).encode()
    raw = gzip.compress(plain, compresslevel=9)
    assert len(plain) / len(raw) > 150
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_chat(session, hardened.base_url, data=raw, headers={"Content-Encoding": "gzip"})
    assert status == 200, body
    received = provider_requests(hardened.demo_provider_url)[-1]
    assert len(received["body"]["messages"]) == 3000


async def test_a_gzip_body_is_scanned_like_any_other(hardened: Stack) -> None:
    raw = gzip.compress(json.dumps(chat_body("mail me at someone@example.com")).encode())
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_chat(session, hardened.base_url, data=raw, headers={"Content-Encoding": "gzip"})
    assert status == 400
    assert json.loads(body)["error"]["guardrail_key"] == "no-pii"


async def test_an_unknown_encoding_is_a_clear_400(hardened: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_chat(session, hardened.base_url, data=json.dumps(chat_body()).encode(),
                                          headers={"Content-Encoding": "x-custom"})
    assert status == 400
    assert json.loads(body)["error"]["code"] == "unsupported_content_encoding"


ACCEPTED = "send the body uncompressed, or compressed once with gzip or br"


async def post_encoded(session: aiohttp.ClientSession, url: str, data: bytes, coding: str) -> tuple[int, str, Any]:
    async with session.post(url, data=io.BytesIO(data), headers={"Authorization": f"Bearer {DEMO_TOKEN}",
                                                                "Content-Encoding": coding}) as response:
        return response.status, response.content_type, await response.json(content_type=None)


@pytest.mark.parametrize(("coding", "data"), [
    # aiohttp inflated it while reading the body: 503 policy_service_unavailable and a traceback.
    pytest.param("deflate", json.dumps(chat_body()).encode(), id="deflate-plain-body"),
    pytest.param("deflate", zlib.compress(json.dumps(chat_body()).encode()), id="deflate-body"),
    pytest.param("zstd", json.dumps(chat_body()).encode(), id="zstd"),  # was aiohttp's own text/plain 400
    pytest.param("compress", json.dumps(chat_body()).encode(), id="compress"),
])
async def test_any_other_coding_is_a_json_400_without_a_traceback(hardened: Stack, coding: str, data: bytes) -> None:
    errors_before = _error_lines(hardened)
    async with aiohttp.ClientSession() as session:
        for path in (CHAT_PATH, EMBEDDINGS_PATH):
            status, content_type, body = await post_encoded(session, hardened.base_url + path, data, coding)
            assert (status, content_type) == (400, "application/json"), body
            assert body["error"] == {"message": f"Content-Encoding '{coding}' is not supported; {ACCEPTED}",
                                     "type": "invalid_request_error", "code": "unsupported_content_encoding",
                                     "param": None}
    assert _error_lines(hardened) == errors_before


def _error_lines(stack: Stack) -> int:
    text = (stack.workdir / "stack.log").read_text(encoding="utf-8", errors="replace")
    return text.count("Traceback") + text.count('"level":"error"')


async def test_two_codings_are_refused_as_two(hardened: Stack) -> None:
    # Envoy decodes one layer of `gzip, gzip` and passes the other on with `gzip`.
    twice = gzip.compress(gzip.compress(json.dumps(chat_body()).encode()))
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_encoded(session, hardened.base_url + CHAT_PATH, twice, "gzip, gzip")
    assert status == 400
    assert body["error"]["code"] == "unsupported_content_encoding"
    assert body["error"]["message"] == f"Content-Encoding 'gzip, gzip' lists several codings; only a single coding is accepted: {ACCEPTED}"


@pytest.mark.parametrize("coding", ["gzip", "br"])
async def test_a_body_that_is_not_its_coding_is_said_so(hardened: Stack, coding: str) -> None:
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_encoded(session, hardened.base_url + CHAT_PATH, json.dumps(chat_body()).encode(),
                                             coding)
    assert status == 400
    assert body["error"] == {"message": f"The request body could not be decoded as {coding} (its Content-Encoding): "
                                        f"decoding gave nothing; {ACCEPTED}",
                             "type": "invalid_request_error", "code": "content_decoding_failed", "param": None}


async def test_the_forwarding_path_refuses_an_encoded_body(hardened: Stack) -> None:
    raw = gzip.compress(json.dumps(chat_body()).encode())
    async with aiohttp.ClientSession() as session:
        decision = await callout(session, hardened, json.dumps(chat_body()).encode(), DEMO_TOKEN)
        async with session.post(hardened.sidecar_url + CHAT_PATH, data=raw,
                                headers={"x-cgt-decision": decision, "Content-Encoding": "gzip"}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "unsupported_content_encoding"


# ---- 4: a slot whose client left before the forward comes back within seconds ----------------

async def test_an_abandoned_slot_comes_back_and_retry_after_says_when(hardened: Stack) -> None:
    raw = json.dumps(chat_body("abandoned")).encode()
    async with aiohttp.ClientSession() as session:
        await callout(session, hardened, raw, CONC_TOKEN)  # admitted; its client never forwards
        status, headers, body = await post_chat(session, hardened.base_url, chat_body("next"), token=CONC_TOKEN)
        assert status == 429, body
        wait = int(headers["Retry-After"])
        assert 1 <= wait <= TTL + 1
        await asyncio.sleep(wait + 0.2)
        status, _, body = await post_chat(session, hardened.base_url, chat_body("next"), token=CONC_TOKEN)
    assert status == 200, body


# ---- 6: cheap decisions first; large prompts do not stall small requests ---------------------

async def test_a_token_over_its_rate_limit_gets_429_before_any_scan(hardened: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        first = await post_chat(session, hardened.base_url, chat_body("one"), token=RPM_TOKEN)
        assert first[0] == 200
        # Over the limit AND blocked by the guardrail: the rate limit answers, the scan never runs.
        status, headers, body = await post_chat(session, hardened.base_url,
                                                chat_body("x " * 500_000 + "a@b.example"), token=RPM_TOKEN)
    assert status == 429, body[:200]
    assert json.loads(body)["error"]["code"] == "requests_per_minute"
    assert int(headers["Retry-After"]) >= 1


async def test_small_requests_are_answered_while_large_prompts_are_scanned(demo_gateway: Stack) -> None:
    # The demo policies: PII and injection guardrails scan the demo token's prompts.
    large = chat_body("plain words without anything to find " * 100_000)  # ~3.7 MB each
    async with aiohttp.ClientSession() as session:
        big = [asyncio.create_task(post_chat(session, demo_gateway.base_url, large)) for _ in range(4)]
        await asyncio.sleep(0.1)
        small = await asyncio.gather(*(post_chat(session, demo_gateway.base_url, chat_body(f"s{i}"))
                                       for i in range(20)))
        large_results = await asyncio.gather(*big)
    assert [s for s, _, _ in small] == [200] * 20
    assert [s for s, _, _ in large_results] == [200] * 4


# ---- 7: deep nesting is a 400 naming the field -----------------------------------------------

async def test_deep_nesting_is_a_400_not_a_500(hardened: Stack) -> None:
    depth = 300
    raw = (b'{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": '
           + b"[" * depth + b"1" + b"]" * depth + b"}}")
    async with aiohttp.ClientSession() as session:
        status, _, body = await post_chat(session, hardened.base_url, data=raw)
        assert status == 400
        error = json.loads(body)["error"]
        assert (error["code"], error["param"][:10]) == ("nesting_too_deep", "metadata.x")
        node: Any = "leaf"
        for _ in range(MAX_JSON_DEPTH - 1):  # the innermost list sits at exactly MAX_JSON_DEPTH
            node = [node]
        deepest = {"model": "gpt-4", "messages": [{"role": "user", "content": "deep ok"}], "metadata": node}
        status, _, body = await post_chat(session, hardened.base_url, deepest)
    assert status == 200, body[:300]


# ---- 3: several workers share the parent's key ----------------------------------------------

def test_two_workers_without_an_explicit_key_share_one(tmp_path: Path) -> None:
    settings = stack_settings(write_test_policies(tmp_path / "policies"))
    stack = Stack(settings, tmp_path, log=(tmp_path / "stack.log").open("wb"),
                  extra_env={WORKERS_ENV: "2", "GATEWAY_DECISION_KEY": ""})  # each worker would make its own

    async def burst() -> list[int]:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(post_chat(session, stack.base_url, chat_body(f"w{i}"))
                                             for i in range(32)))
        return [status for status, _, _ in results]

    try:
        stack.start()
        assert asyncio.run(burst()) == [200] * 32
    finally:
        stack.stop()


# ---- 5: slow clients are cut within bounded times; long streams are not ----------------------

@pytest.fixture(scope="module")
def short_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("short-limits")
    settings = stack_settings(write_test_policies(workdir / "policies"), request_headers_timeout_seconds=1.0,
                              request_timeout_seconds=2.0, envoy_max_connections=24)
    stack = start_stack(workdir, settings)
    yield stack
    stack.stop()


def _connect(stack: Stack) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.settings.listen_port), timeout=10)
    sock.settimeout(10)
    return sock


def _trickle_until_cut(sock: socket.socket, data: bytes, limit: float = 8.0) -> tuple[float, bytes]:
    """Sends `data` one byte every 0.2 s until Envoy answers or closes; (seconds taken, answer)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    answer = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if time.monotonic() - started > limit:
                break
            continue
        except OSError:
            break
        answer += chunk
        if not chunk or b"\r\n\r\n" in answer:
            break
    return time.monotonic() - started, answer


def test_slow_headers_are_cut(short_limits: Stack) -> None:
    head = f"POST {CHAT_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_TOKEN}\r\n".encode() + b"X-Pad: " + b"a" * 200
    with _connect(short_limits) as sock:
        taken, answer = _trickle_until_cut(sock, head)
    assert taken < 6, "Envoy kept a connection sending headers one byte at a time"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_a_slow_body_is_cut_with_a_json_408(short_limits: Stack) -> None:
    body = json.dumps(chat_body("y" * 400)).encode()
    head = (f"POST {CHAT_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with _connect(short_limits) as sock:
        sock.sendall(head)
        taken, answer = _trickle_until_cut(sock, body)
    assert taken < 6
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"request_timeout"' in answer.replace(b" ", b"")


def test_a_stream_longer_than_the_request_timeout_is_not_cut(short_limits: Stack) -> None:
    async def run() -> tuple[int, bytes, float]:
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            body = chat_body("slow: one two three four five six seven eight nine ten", stream=True)
            status, _, raw = await post_chat(session, short_limits.base_url, body)
        return status, raw, time.monotonic() - started

    status, raw, taken = asyncio.run(run())
    assert status == 200
    assert taken > short_limits.settings.request_timeout_seconds  # longer than the request-phase limit
    assert parse_sse(raw)[-1] == "[DONE]"


def test_connections_beyond_the_limit_are_refused(short_limits: Stack) -> None:
    opened = [_connect(short_limits) for _ in range(30)]
    try:
        time.sleep(0.5)
        refused = 0
        for sock in opened:
            sock.settimeout(0.05)
            try:
                refused += sock.recv(1) == b""
            except TimeoutError:
                pass  # still open
            except OSError:
                refused += 1
        assert 1 <= refused <= 30 - 20  # at most 24 accepted (a few may be the stack's own)
    finally:
        for sock in opened:
            sock.close()
