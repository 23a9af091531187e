"""Transport faults users met (issue 15), through the real Envoy: kept-alive connections on every
denial, HTTP/1.0 clients, exact big integers, /healthz when the sidecar hangs, the access log's
status for a client that left, and a start on a busy port."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.devtools.launcher import Stack, envoy_binary, free_port
from sidecar.envoy.config import render
from tests.e2e.faults import FaultyProvider, start_gateway, write_policies
from tests.e2e.stacks import REPO, stack_settings
from tests.e2e.support import (
    CHAT_PATH,
    DEMO_TOKEN,
    RESTRICTED_TOKEN,
    chat_body,
    log_entries,
    parse_sse,
    provider_requests,
)

AUTH = {"Authorization": f"Bearer {DEMO_TOKEN}", "Content-Type": "application/json"}


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


# method, path, body, headers, expected status
DENIALS = [
    ("POST", CHAT_PATH, b"{not json", AUTH, 400),
    ("POST", CHAT_PATH, raw({"model": "gpt-4"}), AUTH, 400),
    ("POST", CHAT_PATH, raw(chat_body(seed=123456789012345678901234567890)), AUTH, 400),
    ("POST", CHAT_PATH, raw(chat_body()), {"Authorization": "Bearer cgt_nobody"}, 401),
    ("POST", CHAT_PATH, raw(chat_body()), {"Authorization": f"Bearer {RESTRICTED_TOKEN}"}, 403),
    ("POST", CHAT_PATH, raw(chat_body(model="gpt-5")), AUTH, 404),
    ("POST", "/v1/chat/completions", raw(chat_body()), AUTH, 404),
    ("GET", "/nowhere", None, {}, 404),
    ("PUT", CHAT_PATH, raw(chat_body()), AUTH, 405),
    ("POST", CHAT_PATH, raw(chat_body(model="text-embedding-3-small")), AUTH, 422),
    ("POST", CHAT_PATH, raw(chat_body()), AUTH, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), DENIALS,
                         ids=[f"{d[4]}-{d[0]}-{d[1]}-{i}" for i, d in enumerate(DENIALS)])
def test_every_answer_keeps_the_connection_open(gateway: Stack, method: str, path: str, body: bytes | None,
                                                headers: dict[str, str], status: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.settings.listen_port, timeout=10)
    try:
        sockets = []
        for _ in range(2):
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == status
            assert response.getheader("connection") is None, "no `connection: close`"
            assert not response.will_close
            sockets.append(connection.sock)
        assert sockets[0] is sockets[1] and sockets[0] is not None, "both answers came on one connection"
    finally:
        connection.close()


def http10(port: int, request_line: str, body: bytes, headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.0 exchange on a raw socket (no Host header), read until the server closes."""
    head = [request_line, f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header_block, _, payload = data.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode().split("\r\n")
    return status_line, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, payload


@pytest.mark.parametrize("stream", [False, True])
def test_http_1_0_clients_are_served_with_a_request_id(gateway: Stack, stream: bool) -> None:
    status_line, headers, payload = http10(gateway.settings.listen_port, f"POST {CHAT_PATH} HTTP/1.0",
                                           raw(chat_body("echo: hi there", stream=stream)), AUTH)
    assert status_line.split()[1] == "200", (status_line, payload[:200])
    assert headers["x-request-id"].startswith("req_")
    if stream:
        events = parse_sse(payload)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "hi there"
    else:
        assert json.loads(payload)["choices"][0]["message"]["content"] == "hi there"


def test_integers_keep_their_exact_value_on_the_way_to_the_provider(gateway: Stack) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.settings.listen_port, timeout=10)
    try:
        connection.request("POST", CHAT_PATH, body=raw(chat_body(seed=2**63 - 1)), headers=AUTH)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        request_id = response.getheader("x-request-id")
        response.read()
        connection.request("POST", CHAT_PATH, body=raw(chat_body(seed=-(10**30))), headers=AUTH)
        refused = connection.getresponse()
        assert refused.status == 400
        error = json.loads(refused.read())["error"]
        assert (error["param"], error["code"]) == ("seed", "integer_out_of_range")
    finally:
        connection.close()
    seen = [r for r in provider_requests(gateway.demo_provider_url) if r["headers"].get("x-request-id") == request_id]
    assert [r["body"]["seed"] for r in seen] == [2**63 - 1]


# ---- a hung sidecar, a client that leaves -------------------------------------------------------

@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("transport")
    folder = write_policies(workdir / "policies", f"""
providers:
  faulty: {{type: openai, base_url: {faulty.url}/v1}}
models:
  slow: {{deployments: [{{provider: faulty, model: slow-one}}]}}
""")
    stack = start_gateway(workdir, folder)
    yield stack
    stack.stop()


async def test_healthz_is_503_when_the_sidecar_hangs(slow_gateway: Stack) -> None:
    sidecar = slow_gateway.processes["sidecar"]
    sidecar.send_signal(signal.SIGSTOP)
    try:
        async with aiohttp.ClientSession() as session, session.get(slow_gateway.base_url + "/healthz") as response:
            status, body = response.status, await response.json()
    finally:
        sidecar.send_signal(signal.SIGCONT)
    assert status == 503
    assert (body["error"]["type"], body["error"]["code"]) == ("service_unavailable", "policy_service_unavailable")


async def test_a_client_that_left_before_any_answer_is_logged_as_499(slow_gateway: Stack,
                                                                     faulty: FaultyProvider) -> None:
    faulty.set("slow-one", "slow", delay=2.0, times=1)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(slow_gateway.base_url + CHAT_PATH, json=chat_body(model="slow"), headers=AUTH,
                                    timeout=aiohttp.ClientTimeout(total=0.5)) as response:
                await response.read()
    lines = await log_entries(slow_gateway.workdir, '"msg":"request"')
    assert [(line["status"], line["error"]) for line in lines] == [(499, "client_disconnected")]


# ---- a busy port stops the start ----------------------------------------------------------------

@contextmanager
def held_port() -> Iterator[int]:
    """A port some other program (another gateway's Envoy) listens on, with SO_REUSEPORT as Envoy's default."""
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        yield port
    finally:
        holder.close()


def run_sidecar(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def ports_env(tmp_path: Path, **taken: int) -> dict[str, str]:
    env = {"GATEWAY_PORT": str(free_port()), "GATEWAY_SIDECAR_PORT": str(free_port()),
           "GATEWAY_ADMIN_PORT": str(free_port()), "GATEWAY_DEMO_PROVIDER_PORT": str(free_port()),
           "GATEWAY_POLICIES": str(REPO / "policies"), "GATEWAY_STATE_DIR": str(tmp_path / "state")}
    env.update({name: str(port) for name, port in taken.items()})
    return env


@pytest.mark.parametrize("variable", ["GATEWAY_PORT", "GATEWAY_SIDECAR_PORT", "GATEWAY_ADMIN_PORT",
                                      "GATEWAY_DEMO_PROVIDER_PORT"])
def test_run_on_a_busy_port_stops_with_a_message_naming_it(tmp_path: Path, variable: str) -> None:
    with held_port() as port:
        result = run_sidecar(["run"], ports_env(tmp_path, **{variable: port}))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"port {port}" in output and variable in output and "already in use" in output
    assert "Traceback" not in output and "Ctrl-C stops" not in output


def test_serve_on_a_busy_sidecar_port_stops_with_a_message_naming_it(tmp_path: Path) -> None:
    with held_port() as port:
        result = run_sidecar(["serve"], ports_env(tmp_path, GATEWAY_SIDECAR_PORT=port))
    assert result.returncode == 1, result.stderr
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_envoy_does_not_share_a_taken_listener_port(tmp_path: Path) -> None:
    """Even if something takes the port between the check and Envoy's start, Envoy fails to bind."""
    with held_port() as port:
        settings = stack_settings(tmp_path, listen_port=port)
        config = tmp_path / "envoy.yaml"
        config.write_text(render(settings), encoding="utf-8")
        envoy = subprocess.Popen([envoy_binary(), "-c", str(config), "--disable-hot-restart", "-l", "error"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while envoy.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            returncode = envoy.poll()
        finally:
            if envoy.poll() is None:
                envoy.kill()
            output = envoy.communicate()[0]
    assert returncode not in (None, 0), "Envoy must not start on a port another process listens on"
    assert "Address already in use" in output or "cannot bind" in output, output[-2000:]
