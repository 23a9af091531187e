"""Provider errors, timeouts, mid-stream faults and keepalives through the real Envoy.

Every fault ends in an OpenAI-style error: a JSON error with the right status before the first
byte, an error event followed by `data: [DONE]` after it. Nothing hangs and no traceback leaks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sidecar.devtools.launcher import Stack, free_port
from tests.e2e.faults import FaultyProvider, chat, error_of, start_gateway, write_policies
from tests.e2e.support import log_entries, parse_sse

DEPLOYMENT = "x-gateway-deployment"
MODELS = ("errors", "ttfb", "hang", "stall", "reset", "garbage", "shape", "event", "keepalive", "down")


def policy(faulty: str, dead: str) -> str:
    models = "\n".join(f"  {m}:\n    deployments: [{{provider: {'dead' if m == 'down' else 'p'}, model: {m}}}]"
                       for m in MODELS if m != "keepalive")
    return f"""
providers:
  p:
    type: openai
    base_url: {faulty}/v1
    timeouts: {{connect: 300ms, first_byte: 500ms, idle: 300ms, total: 5s}}
    breaker: {{enabled: false}}
  dead:
    type: openai
    base_url: {dead}/v1
    breaker: {{enabled: false}}
  patient:
    type: openai
    base_url: {faulty}/v1
    timeouts: {{connect: 300ms, first_byte: 3s, idle: 2s, total: 10s}}
models:
{models}
  keepalive:
    deployments: [{{provider: patient, model: keepalive}}]
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("faults")
    dead = f"http://127.0.0.1:{free_port()}"
    stack = start_gateway(workdir, write_policies(workdir / "policies", policy(faulty.url, dead)))
    yield stack
    stack.stop()


def stream_parts(raw: bytes) -> tuple[str, list[dict[str, object]]]:
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]", raw[-200:]
    events = [json.loads(p) for p in payloads[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    return text, [e["error"] for e in events if "error" in e]


def assert_json_error(status: int, headers: object, raw: bytes, expected_status: int, error_type: str,
                      code: str | None) -> dict[str, object]:
    assert status == expected_status, raw
    error = error_of(raw)
    assert (error["type"], error["code"]) == (error_type, code)
    assert "Traceback" not in raw.decode()
    return error


# ---- before the first byte: JSON errors ---------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_provider_4xx_is_passed_through_with_its_message(gw: Stack, faulty: FaultyProvider,
                                                               stream: bool) -> None:
    faulty.set("errors", "status", status=400)
    status, headers, raw = await chat(gw, "errors", stream=stream)
    error = assert_json_error(status, headers, raw, 400, "invalid_request_error", "upstream_400")
    assert error["message"] == "Injected failure 400 for errors"
    assert headers[DEPLOYMENT] == "p/errors"


@pytest.mark.parametrize("stream", [False, True])
async def test_unreachable_provider_is_502(gw: Stack, stream: bool) -> None:
    status, headers, raw = await chat(gw, "down", stream=stream)
    assert_json_error(status, headers, raw, 502, "provider_error", "provider_unreachable")


@pytest.mark.parametrize("stream", [False, True])
async def test_no_first_byte_in_time_is_504(gw: Stack, faulty: FaultyProvider, stream: bool) -> None:
    faulty.set("ttfb", "slow", delay=2.0)
    status, headers, raw = await chat(gw, "ttfb", stream=stream)
    assert_json_error(status, headers, raw, 504, "timeout", "provider_timeout")


async def test_whole_answer_stalling_after_headers_is_504(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("hang", "hang")
    status, headers, raw = await chat(gw, "hang")
    assert_json_error(status, headers, raw, 504, "timeout", "provider_timeout")


async def test_garbage_answer_is_502(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("garbage", "garbage")
    status, headers, raw = await chat(gw, "garbage")
    assert_json_error(status, headers, raw, 502, "provider_error", "bad_provider_response")


async def test_connection_dropped_before_the_answer_is_502(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("reset", "reset")
    status, headers, raw = await chat(gw, "reset")
    assert_json_error(status, headers, raw, 502, "provider_error", "provider_unreachable")


# ---- after the first byte: error event and [DONE] -----------------------------------------

@pytest.mark.parametrize(("model", "mode", "code", "text"), [
    ("reset", "reset", "stream_broken", "reply from"),
    ("stall", "hang", "provider_timeout", "reply from"),
    ("hang", "hang", "provider_timeout", ""),
    ("garbage", "garbage", "bad_provider_stream", "reply from"),
    ("shape", "bad_shape", "bad_provider_stream", "reply from"),  # JSON, but not a chunk
    ("event", "error_event", "upstream_500", "reply from reset"),
])
async def test_mid_stream_fault_ends_with_an_error_event_and_done(gw: Stack, faulty: FaultyProvider, model: str,
                                                                  mode: str, code: str, text: str) -> None:
    faulty.set(model, mode, after=0 if model == "hang" else (3 if model == "event" else 2))
    status, headers, raw = await chat(gw, model, stream=True)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    relayed, errors = stream_parts(raw)
    assert relayed == (text.replace("reset", model) if model == "event" else text)
    assert [e["code"] for e in errors] == [code]
    assert "Traceback" not in raw.decode()


async def test_mid_stream_faults_are_logged_with_their_cause(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("stall", "hang", after=1)
    status, headers, _ = await chat(gw, "stall", stream=True)
    assert status == 200
    request_id = headers["x-request-id"]
    access = await log_entries(gw.workdir, f'"{request_id}"', '"sidecar.access"')
    assert [(a["status"], a["error"], a["deployment"]) for a in access] == [(200, "provider_timeout", "p/stall")]


async def test_keepalive_comments_during_provider_silence(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("keepalive", "silence", delay=0.5)  # keepalive every 0.1s in these stacks
    status, _, raw = await chat(gw, "keepalive", stream=True)
    assert status == 200
    assert raw.count(b": ping\n\n") >= 2, raw[:300]
    relayed, errors = stream_parts(raw)
    assert (relayed, errors) == ("reply from keepalive one two three", [])
