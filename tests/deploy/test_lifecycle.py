"""The pod's probe commands and Envoy's preStop drain, run against the real programs on loopback."""

from __future__ import annotations

import http.client
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.devtools.launcher import Stack, envoy_binary, free_port, wait_http
from sidecar.envoy.config import render
from sidecar.settings import Settings
from tests.deploy.support import BASE, ENVOY, SIDECAR, Rendered, probe_url

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

DRAIN_SCRIPT = BASE / "envoy" / "drain.sh"


def _run_probe(probe: dict[str, Any], port: int) -> subprocess.CompletedProcess[str]:
    command = list(probe["exec"]["command"])
    assert command[0] == "python"
    command[0] = sys.executable
    command[-1] = re.sub(r"127\.0\.0\.1:\d+/", f"127.0.0.1:{port}/", command[-1])
    return subprocess.run(command, capture_output=True, text=True, timeout=10)


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(sidecar_port=free_port(), status_port=free_port(), policies_dir=BASE / "policies",
                        drain_seconds=1)
    stack = Stack(settings, tmp_path, with_demo_provider=False, log=(tmp_path / "sidecar.log").open("wb"))
    try:
        stack.start_sidecar()
        yield stack
    finally:
        stack.stop()


def test_sidecar_probe_commands_pass_against_the_running_sidecar(rendered: dict[str, Rendered],
                                                                 sidecar: Stack) -> None:
    container = rendered["prod"].container(SIDECAR)
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        result = _run_probe(container[name], sidecar.settings.sidecar_port)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_dev_demo_provider_probe_commands_pass_against_the_running_demo_provider(
        rendered: dict[str, Rendered], tmp_path: Path) -> None:
    settings = Settings(demo_provider_port=free_port())
    stack = Stack(settings, tmp_path, log=(tmp_path / "demo.log").open("wb"))
    try:
        stack.start_demo_provider()
        container = rendered["dev"].container("demo-provider")
        # The port the demo policies send `gpt-4` to by default.
        assert container["args"] == ["demo-provider", "--port", str(Settings().demo_provider_port)]
        assert all(f":{Settings().demo_provider_port}/" in probe_url(container[name]) for name in PROBES)
        for name in PROBES:
            result = _run_probe(container[name], settings.demo_provider_port)
            assert result.returncode == 0, f"{name}: {result.stderr}"
    finally:
        stack.stop()


def test_sidecar_probe_command_fails_when_nothing_answers_or_the_path_is_wrong(
        rendered: dict[str, Rendered], sidecar: Stack) -> None:
    probe = rendered["prod"].container(SIDECAR)["readinessProbe"]
    assert _run_probe(probe, free_port()).returncode != 0  # connection refused
    wrong_path = {"exec": {"command": [*probe["exec"]["command"][:-1], "http://127.0.0.1:8081/nope"]}}
    result = _run_probe(wrong_path, sidecar.settings.sidecar_port)
    assert result.returncode != 0 and "404" in result.stderr


@pytest.fixture
def envoy(rendered: dict[str, Rendered], tmp_path: Path) -> Iterator[tuple[Settings, subprocess.Popen[bytes]]]:
    """Envoy with the pod's arguments, on free loopback ports (no sidecar needed: 404s are Envoy's own)."""
    settings = Settings(listen_port=free_port(), admin_port=free_port(), sidecar_port=free_port(),
                        metrics_port=free_port())
    config = tmp_path / "envoy.yaml"
    config.write_text(render(settings), encoding="utf-8")
    args = list(rendered["prod"].container(ENVOY)["args"])
    args[args.index("--config-path") + 1] = str(config)
    proc = subprocess.Popen([envoy_binary(), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{settings.admin_port}/ready", process=proc)
        yield settings, proc
    finally:
        proc.terminate()
        proc.wait(10)


def _connection_header(port: int) -> str | None:
    # http.client keeps the connection alive (urllib would send `Connection: close` itself).
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/nope")
        response = conn.getresponse()
        response.read()
        assert response.status == 404
        return response.getheader("connection")
    finally:
        conn.close()


def _drain(admin_port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_ADMIN_PORT": str(admin_port), "GATEWAY_DEREGISTER_SECONDS": "0",
           "GATEWAY_DRAIN_SECONDS": "5"}
    return subprocess.run(["bash", str(DRAIN_SCRIPT)], env=env, capture_output=True, text=True, timeout=15)


def test_prestop_drains_envoy_so_clients_are_told_to_reconnect(
        envoy: tuple[Settings, subprocess.Popen[bytes]]) -> None:
    settings, proc = envoy
    assert _connection_header(settings.listen_port) is None
    result = _drain(settings.admin_port)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200 OK"), result.stdout
    # Draining: the listener still answers (endpoints may lag) but closes each connection after it.
    assert _connection_header(settings.listen_port) == "close"
    assert proc.poll() is None  # Envoy exits on the kubelet's SIGTERM, not before


def _held_callout(received: threading.Event, release: threading.Event) -> type[http.server.BaseHTTPRequestHandler]:
    """Stands in for the sidecar: holds the callout until the test releases it, then denies."""

    class HeldCallout(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            received.set()
            release.wait(10)
            body = b'{"error": {"message": "denied", "type": "permission_error", "code": "held", "param": null}}'
            self.send_response(403)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return HeldCallout


def _post_chat(port: int, statuses: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("POST", "/api/client/v1/chat/completions", body=b'{"model": "gpt-4", "messages": []}',
                     headers={"content-type": "application/json", "authorization": "Bearer cgt_x"})
        statuses.append(conn.getresponse().status)
    finally:
        conn.close()


def test_prestop_waits_for_requests_in_flight(envoy: tuple[Settings, subprocess.Popen[bytes]]) -> None:
    settings, _ = envoy
    received, release = threading.Event(), threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", settings.sidecar_port), _held_callout(received, release))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    statuses: list[int] = []
    client = threading.Thread(target=_post_chat, args=(settings.listen_port, statuses))
    client.start()
    env = {**os.environ, "GATEWAY_ADMIN_PORT": str(settings.admin_port), "GATEWAY_DEREGISTER_SECONDS": "0",
           "GATEWAY_DRAIN_SECONDS": "10"}
    try:
        assert received.wait(10), "the request never reached the callout"
        with subprocess.Popen(["bash", str(DRAIN_SCRIPT)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) as drain:
            assert drain.stdout is not None
            assert drain.stdout.readline().startswith("HTTP/1.1 200 OK")
            assert drain.stdout.readline() == "waiting for 1 request(s) in flight\n"
            assert drain.poll() is None
            release.set()
            client.join(15)
            assert drain.wait(15) == 0
    finally:
        release.set()
        client.join(15)
        server.shutdown()
        server.server_close()
    # The request in flight finished normally (the denial came through) before the hook returned.
    assert statuses == [403]


def test_prestop_returns_at_once_when_envoy_is_already_gone() -> None:
    result = _drain(free_port())
    assert result.returncode == 0
    assert result.stdout == ""
