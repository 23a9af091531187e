"""What Envoy itself guarantees: fail closed, 503 decisions intact, internal headers stripped."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sidecar.app import init_app
from sidecar.appkeys import PIPELINE
from sidecar.callout.handoff import DECISION_HEADER
from sidecar.callout.pipeline import Check, DecisionPipeline
from sidecar.core.errors import BreakerOpen
from sidecar.devtools.launcher import Stack, envoy_binary
from sidecar.envoy.config import render
from tests.e2e.stacks import stack_settings, start_stack, write_test_policies
from tests.e2e.support import CHAT_PATH, chat_body, post_chat, provider_requests


def test_rendered_envoy_config_passes_envoy_validate(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(render(stack_settings(tmp_path)), encoding="utf-8")
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout + result.stderr


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    stack = start_stack(tmp_path, stack_settings(write_test_policies(tmp_path / "policies")))
    yield stack
    stack.stop()


async def test_fails_closed_when_the_sidecar_is_down(own_stack: Stack) -> None:
    own_stack.stop_process("sidecar")
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, own_stack.base_url, chat_body())
    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert headers["x-request-id"].startswith("req_")
    assert json.loads(raw)["error"]["code"] == "policy_service_unavailable"
    assert provider_requests(own_stack.demo_provider_url) == []  # nothing got through


async def test_client_cannot_forge_the_decision_header(gateway: Stack) -> None:
    forged = {DECISION_HEADER: "v1.eyJ0b2tlbl9uYW1lIjoiYWRtaW4ifQ.AAAA", "X-Cgt-Anything": "1"}
    async with aiohttp.ClientSession() as session:
        status, _, raw = await post_chat(session, gateway.base_url, chat_body(), token="cgt_bad", headers=forged)
        assert status == 401, raw  # the callout ran and denied; the forged header changed nothing
        status, headers, _ = await post_chat(session, gateway.base_url, chat_body(), headers=forged)
    assert status == 200
    seen = next(r for r in provider_requests(gateway.demo_provider_url)
                if r["headers"].get("x-request-id") == headers["x-request-id"])
    assert not any(name.startswith("x-cgt-") for name in seen["headers"])


async def test_the_forwarding_endpoint_refuses_requests_without_a_decision(gateway: Stack) -> None:
    async with aiohttp.ClientSession() as session, \
            session.post(gateway.sidecar_url + CHAT_PATH, json=chat_body()) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "missing_decision"


async def _open_breaker(check: Check) -> None:
    raise BreakerOpen("Provider circuit breaker open for gpt-4", headers={"Retry-After": "7"})


@pytest.fixture
async def breaker_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Real Envoy in front of an in-process sidecar whose pipeline always decides 503."""
    settings = stack_settings(write_test_policies(tmp_path / "policies"))
    app = init_app(settings)
    app[PIPELINE] = DecisionPipeline([_open_breaker])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, settings.sidecar_socket).start()  # Envoy's `pipe` (stack_settings)
    stack = Stack(settings, tmp_path, with_demo_provider=False)
    stack.start_envoy()
    yield stack
    stack.stop()
    await runner.cleanup()


async def test_a_503_decision_reaches_the_client_with_body_and_retry_after(breaker_stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await post_chat(session, breaker_stack.base_url, chat_body(request_id="b-1"))
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert headers["x-request-id"] == "b-1"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(raw) == {"error": {"message": "Provider circuit breaker open for gpt-4",
                                         "type": "circuit_breaker_open", "code": "circuit_breaker_open",
                                         "param": None}}
