"""The faulty provider as a process, and a gateway stack whose policies point at it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from sidecar.core.tokens import hash_token
from sidecar.devtools.launcher import Stack, free_port, wait_http
from tests.e2e.stacks import stack_settings, start_stack
from tests.e2e.support import CHAT_PATH, DEMO_TOKEN, auth

PROVIDER_KEY_ENV = "FAULTY_PROVIDER_KEY"


class FaultyProvider:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "faulty-provider.log").open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sidecar.devtools.faulty_provider", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/_stats", process=self._process)

    def set(self, model: str, mode: str = "ok", **options: Any) -> None:
        self._post("/_mode", {"model": model, "mode": mode, **options})

    def count(self, model: str) -> int:
        counts: dict[str, int] = self._get("/_stats")
        return counts.get(model, 0)

    def received(self, model: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(f"/_requests?model={model}")
        return result

    def stop(self) -> None:
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()

    def _post(self, path: str, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())


def write_policies(folder: Path, providers_and_models: str) -> Path:
    """A policy folder with the demo token and the given `providers:`/`models:`/`breaker:` YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokens.yaml").write_text(f"tokens:\n  demo:\n    sha256: {hash_token(DEMO_TOKEN)}\n",
                                        encoding="utf-8")
    (folder / "providers.yaml").write_text(providers_and_models, encoding="utf-8")
    return folder


def start_gateway(workdir: Path, policies: Path, **overrides: Any) -> Stack:
    """A stack without the demo provider whose policies name the faulty provider (its key in the
    environment): loopback TCP to the sidecar and a 0.1 s keepalive unless `overrides` say otherwise."""
    settings = stack_settings(policies, **{"sidecar_socket": "", "keepalive_seconds": 0.1, **overrides})
    return start_stack(workdir, settings, with_demo_provider=False, extra_env={PROVIDER_KEY_ENV: "sk-faulty-test-key"})


async def chat(stack: Stack, model: str, *, stream: bool = False, content: str = "Hello",
               **extra: Any) -> tuple[int, CIMultiDict[str], bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream, **extra}
    async with aiohttp.ClientSession() as session, session.post(
        stack.base_url + CHAT_PATH, json=body, headers=auth()
    ) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


def error_of(raw: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(raw)["error"]
    return error
