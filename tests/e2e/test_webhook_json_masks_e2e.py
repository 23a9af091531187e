"""Webhook masks in JSON texts stay valid JSON, through the real Envoy with a real local detector
(tests/detector_server.py) and a scripted provider: a detector's `replacement` is escaped inside a
string (a quote adds no key, a backslash starts no escape) and a span across JSON structure masks
the values it touches, in tool-call arguments, JSON tool results and JSON answers, whole and
streamed (windows cut inside the arguments)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sidecar.devtools.launcher import Stack
from tests.detector_server import DetectorServer
from tests.e2e.faults import start_gateway, write_policies
from tests.e2e.scripted_support import ScriptedProvider, answer, scripted, send, tool_call

HOSTILE = 'x"}, "evil": "1'  # what the detector replaces `ostrich` with
PATH = "C:\\redacted"  # and `kiwi`
ARGUMENTS = '{"animal": "ostrich", "path": "kiwi", "n": 1, "note": "SECRET", "tail": "END", "z": 2}'
MASKED = {"animal": HOSTILE, "path": PATH, "n": 1, "note": "[ACROSS_1]", "[ACROSS_1]": "[ACROSS_1]", "z": 2}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, scripted_provider: ScriptedProvider,
          detector: DetectorServer) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("webhook-json")
    policies = write_policies(workdir / "policies", f"""
providers:
  scripted: {{type: openai, base_url: "{scripted_provider.url}/v1"}}
models:
  in-mask: {{deployments: [{{provider: scripted, model: m}}]}}
  out-mask: {{deployments: [{{provider: scripted, model: m}}]}}
guardrails:
  wh-in: {{type: webhook, url: '{detector.url}/check', action: mask, scope: {{models: [in-mask]}}}}
  wh-out: {{type: webhook, url: '{detector.url}/check', action: mask, direction: output, stream_chars: 16,
           hold_back: 32, scope: {{models: [out-mask]}}}}
""")
    gateway = start_gateway(workdir, policies)
    yield gateway
    gateway.stop()


async def test_input_masks_keep_arguments_and_tool_results_valid_json(stack: Stack,
                                                                     scripted_provider: ScriptedProvider) -> None:
    messages = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call(ARGUMENTS)]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"found": "ostrich at kiwi"}'},
        {"role": "user", "content": "thanks, an ostrich"},
    ]
    status, raw = await send(stack, {"model": "in-mask", "messages": messages, "request_id": "wh-json-in"})
    assert status == 200, raw
    sent = scripted_provider.received()[-1]["messages"]
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == MASKED
    assert json.loads(sent[2]["content"]) == {"found": f"{HOSTILE} at {PATH}"}
    assert sent[3]["content"] == f"thanks, an {HOSTILE}"  # plain text: the replacement as it is


@pytest.mark.parametrize("stream", [False, True])
async def test_output_masks_keep_tool_call_arguments_valid_json(stack: Stack, stream: bool) -> None:
    body = scripted("out-mask", {"content": None, "tool_calls": [tool_call(ARGUMENTS)]}, stream=stream)
    status, raw = await send(stack, body)
    assert status == 200, raw
    message = answer(raw, stream)
    arguments = message["tool_calls"][0]["function"]["arguments"] if not stream else message["tool_calls"][0]["arguments"]
    assert json.loads(arguments) == MASKED
    assert b"ostrich" not in raw and b"kiwi" not in raw and b"SECRET" not in raw


@pytest.mark.parametrize("stream", [False, True])
async def test_output_masks_keep_a_json_answer_valid_json(stack: Stack, stream: bool) -> None:
    content = json.dumps({"pet": "ostrich", "home": "kiwi", "list": [1, "SECRET", 3, "END"], "ok": True})
    body = scripted("out-mask", {"content": content}, stream=stream, response_format={"type": "json_object"})
    status, raw = await send(stack, body)
    assert status == 200, raw
    assert json.loads(answer(raw, stream)["content"]) == {
        "pet": HOSTILE, "home": PATH, "list": [1, "[ACROSS_1]", "[ACROSS_1]", "[ACROSS_1]"], "ok": True}
