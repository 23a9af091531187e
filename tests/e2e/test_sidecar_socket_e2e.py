"""Envoy to the sidecar over a Unix socket (GATEWAY_SIDECAR_SOCKET, the default of these tests and
the pod) and over loopback TCP (the setting left empty): both hops work either way."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import aiohttp
import pytest
import yaml

from sidecar.devtools.launcher import Stack
from tests.e2e.stacks import stack_settings, start_stack, write_test_policies
from tests.e2e.support import chat_body, parse_sse, post_chat


def _sidecar_endpoint(stack: Stack) -> dict[str, object]:
    config = yaml.safe_load((stack.workdir / "envoy.yaml").read_text(encoding="utf-8"))
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "sidecar")
    address: dict[str, object] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    return address


async def _chat_and_stream(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, _, raw = await post_chat(session, stack.base_url, chat_body("over the hop"))
        assert status == 200, raw
        assert json.loads(raw)["choices"][0]["message"]["content"] == \
            "Hello from the demo provider. You said: over the hop"
        status, _, raw = await post_chat(session, stack.base_url, chat_body("streamed", stream=True))
        assert status == 200, raw
        assert parse_sse(raw)[-1] == "[DONE]"
        status, _, raw = await post_chat(session, stack.base_url, chat_body(), token="cgt_not_a_token")
        assert status == 401, raw  # a denial from the callout travels the same hop


@pytest.mark.parametrize("unix_socket", [True, False], ids=["unix-socket", "tcp"])
async def test_both_hops_over_the_chosen_transport(tmp_path: Path, unix_socket: bool) -> None:
    overrides = {} if unix_socket else {"sidecar_socket": ""}
    settings = stack_settings(write_test_policies(tmp_path / "policies"), **overrides)
    stack = start_stack(tmp_path, settings)
    try:
        if unix_socket:
            assert _sidecar_endpoint(stack) == {"pipe": {"path": settings.sidecar_socket}}
            assert stat.S_ISSOCK(Path(settings.sidecar_socket).stat().st_mode)
        else:
            assert _sidecar_endpoint(stack) == {
                "socket_address": {"address": "127.0.0.1", "port_value": settings.sidecar_port}}
        await _chat_and_stream(stack)
    finally:
        stack.stop()
    if unix_socket:
        assert not Path(settings.sidecar_socket).exists()  # the sidecar removes its socket on the way out
