"""Stream endings through the real Envoy: what an output guardrail holds back when the provider
sends no finish_reason, as OpenAI-compatible servers sometimes do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from sidecar.devtools.launcher import Stack
from tests.e2e.faults import FaultyProvider, chat, start_gateway, write_policies
from tests.e2e.support import DEMO_TOKEN, parse_sse

MODELS = """
providers:
  plain:
    type: openai
    base_url: {url}/v1
    breaker: {{enabled: false}}
models:
  nofin: {{deployments: [{{provider: plain, model: nofin-up}}]}}
"""

GUARDRAILS = """
guardrails:
  word-mask:
    type: pattern
    deny_regexes: ['two']
    action: mask
    direction: output
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stream-end")
    policies = write_policies(workdir / "policies", MODELS.format(url=faulty.url))
    (policies / "guardrails.yaml").write_text(GUARDRAILS, encoding="utf-8")
    stack = start_gateway(workdir, policies)
    yield stack
    stack.stop()


def events(raw: bytes) -> list[dict[str, Any]]:
    payloads = parse_sse(raw)
    assert payloads[-1] == "[DONE]", raw[-200:]
    return [json.loads(p) for p in payloads[:-1]]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_held_back_text_without_finish_reason(gw: Stack, faulty: FaultyProvider, include_usage: bool) -> None:
    # The guardrail holds the short answer back whole; with no finish_reason it used to come out
    # after [the usage chunk and] without id, created and model.
    faulty.set("nofin-up", "no_finish")
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    status, _, raw = await chat(gw, "nofin", stream=True, **extra)
    assert status == 200, raw
    first, *rest = events(raw)
    envelope = {"id": first["id"], "object": "chat.completion.chunk", "created": first["created"], "model": "nofin"}
    assert first == {**envelope, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]}
    text = {**envelope, "choices": [{"index": 0, "delta": {"content": "reply from nofin-up one [PATTERN_1] three"},
                                     "finish_reason": None}]}
    usage = {**envelope, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}}
    assert rest == ([text, usage] if include_usage else [text])


async def test_openai_sdk_reads_the_released_text(gw: Stack, faulty: FaultyProvider) -> None:
    faulty.set("nofin-up", "no_finish")
    client = AsyncOpenAI(base_url=gw.base_url + "/api/client/v1", api_key=DEMO_TOKEN, max_retries=0)
    stream = await client.chat.completions.create(model="nofin", messages=[{"role": "user", "content": "Hello"}],
                                                  stream=True, stream_options={"include_usage": True})
    seen = [(chunk.id, chunk.model, [c.delta.content for c in chunk.choices], chunk.usage is not None)
            async for chunk in stream]
    await client.close()
    chunk_id = seen[0][0]
    assert seen == [(chunk_id, "nofin", [""], False),
                    (chunk_id, "nofin", ["reply from nofin-up one [PATTERN_1] three"], False),
                    (chunk_id, "nofin", [], True)]


async def test_every_choice_gets_its_role(gw: Stack, faulty: FaultyProvider) -> None:
    # The provider leaves the role out; the gateway added it for choice 0 only, so the OpenAI SDK
    # assembled choice 1 with role None.
    faulty.set("nofin-up", "two_choices")
    client = AsyncOpenAI(base_url=gw.base_url + "/api/client/v1", api_key=DEMO_TOKEN, max_retries=0)
    async with client.chat.completions.stream(model="nofin", messages=[{"role": "user", "content": "Hi"}],
                                              n=2) as stream:
        final = await stream.get_final_completion()
    await client.close()
    text = "reply from nofin-up one [PATTERN_1] three"
    assert [(c.index, c.message.role, c.message.content, c.finish_reason) for c in final.choices] == [
        (0, "assistant", text, "stop"), (1, "assistant", text, "stop")]
