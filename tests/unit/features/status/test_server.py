"""The status app in-process: the admin token, the refusal beyond loopback, and what it reports."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sidecar.app import init_app
from sidecar.appkeys import BREAKERS, POLICY_STORE
from sidecar.core.kinds import Outcome
from sidecar.features.status.server import build_status_app, is_loopback, listener_problem
from sidecar.policy.watcher import POLICY_WATCHER
from sidecar.settings import Settings

REPO = Path(__file__).resolve().parents[4]
ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
TOKEN = "s3cret-admin-token"


def main_app(tmp_path: Path) -> web.Application:
    folder = tmp_path / "policies"
    shutil.copytree(REPO / "policies", folder)
    return init_app(Settings(policies_dir=folder))


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {base64.b64encode(b'admin:wrong').decode()}",
                                    f"Token {TOKEN}", "Basic %%%"])
async def test_a_token_is_required_when_configured(tmp_path: Path, aiohttp_client: ClientFactory,
                                                   header: str | None) -> None:
    client = await aiohttp_client(build_status_app(main_app(tmp_path), TOKEN))
    for path in ("/", "/status.json", "/static/status.js"):
        response = await client.get(path, headers={"Authorization": header} if header else {})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert (await response.json())["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"Basic {base64.b64encode(f'anyone:{TOKEN}'.encode()).decode()}"])
async def test_bearer_for_scripts_and_basic_for_browsers(tmp_path: Path, aiohttp_client: ClientFactory,
                                                         header: str) -> None:
    client = await aiohttp_client(build_status_app(main_app(tmp_path), TOKEN))
    response = await client.get("/status.json", headers={"Authorization": header})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"


async def test_it_reports_an_open_breaker_and_a_rejected_change(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    app = main_app(tmp_path)
    client = await aiohttp_client(build_status_app(app, None))
    route = app[POLICY_STORE].current.models.routes["gpt-4"]
    deployment = route.deployments[0]
    breaker = app[BREAKERS].get(deployment.name, deployment.breaker)
    for _ in range(deployment.breaker.consecutive_failures):
        permit = breaker.acquire()
        assert permit is not None
        permit.record(Outcome.SERVER_ERROR)
    (tmp_path / "policies" / "models.yaml").write_text("models: [oops\n", encoding="utf-8")
    assert app[POLICY_WATCHER].check_once() == "rejected"
    status = await (await client.get("/status.json")).json()
    shown = next(m for m in status["models"] if m["key"] == "gpt-4")["deployments"][0]
    assert shown["breaker"] == "open" and 0 < shown["cooldown_left"] <= deployment.breaker.cooldown
    assert status["policy"]["version"] == app[POLICY_STORE].current.version
    assert status["policy"]["rejected_version"] and status["policy"]["rejected_errors"]
    assert any("models.yaml" in error for error in status["policy"]["rejected_errors"])


def test_loopback_needs_no_token_and_anything_else_does() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("status.example")
    assert listener_problem(Settings()) is None
    assert listener_problem(Settings(status_address="0.0.0.0", status_token="t")) is None
    assert listener_problem(Settings(status_address="0.0.0.0", status_port=0)) is None  # page off
    problem = listener_problem(Settings(status_address="0.0.0.0"))
    assert problem is not None and "GATEWAY_STATUS_TOKEN" in problem and "port-forward" in problem


def test_the_token_comes_from_the_env_or_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n", encoding="utf-8")
    assert Settings.from_env({"GATEWAY_STATUS_TOKEN_FILE": str(secret)}).status_token == TOKEN
    assert Settings.from_env({"GATEWAY_STATUS_TOKEN": "a", "GATEWAY_STATUS_TOKEN_FILE": str(secret)}).status_token == "a"
    assert Settings.from_env({}).status_token is None
    with pytest.raises(ValueError, match="GATEWAY_STATUS_TOKEN_FILE"):
        Settings.from_env({"GATEWAY_STATUS_TOKEN_FILE": str(tmp_path / "missing")})
    assert TOKEN not in repr(Settings.from_env({"GATEWAY_STATUS_TOKEN": TOKEN}))


def test_serve_refuses_to_start_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_POLICIES": str(REPO / "policies"), "GATEWAY_STATUS_ADDRESS": "0.0.0.0",
           "GATEWAY_STATE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "sidecar", "serve"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert "refusing to start" in result.stderr and "GATEWAY_STATUS_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    missing = subprocess.run([sys.executable, "-m", "sidecar", "serve"], capture_output=True, text=True, timeout=60,
                             env={**env, "GATEWAY_STATUS_TOKEN_FILE": str(tmp_path / "nope")}, cwd=tmp_path)
    assert missing.returncode == 1 and "cannot be read" in missing.stderr and "Traceback" not in missing.stderr
