"""The callout hands each decision to the `decision_observers` in `extensions`, once, in order of
installation: observability's (metrics and the decision log line) first, then the status page's
and any installed after the app was built. The callout imports no feature to do it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sidecar.app import init_app
from sidecar.appkeys import EXTENSIONS
from sidecar.callout.endpoint import AUTHZ_PREFIX
from sidecar.callout.pipeline import Check
from sidecar.cli.main import DEMO_TOKEN
from sidecar.core.endpoints import CHAT_PATH
from sidecar.core.errors import GatewayError
from sidecar.features.observability.install import record_callout
from sidecar.settings import Settings

KEY = b"k" * 32
REPO_POLICIES = Path(__file__).resolve().parents[3] / "policies"
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
BODY = orjson.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})


def _sample(metrics: str, name: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


async def test_every_decision_reaches_the_observers_once_with_its_error_and_seconds(
        aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path / "state"))
    shutil.copytree(REPO_POLICIES, tmp_path / "policies")
    app = init_app(Settings(policies_dir=tmp_path / "policies", decision_key=KEY, policy_poll_seconds=0))
    seen: list[tuple[str, int | None, float]] = []

    def observe(check: Check, error: GatewayError | None, seconds: float) -> None:
        seen.append((check.request_id, error.status if error else None, seconds))

    observers = app[EXTENSIONS].decision_observers
    first = observers[0]
    assert isinstance(first, partial) and first.func is record_callout  # observability's, installed first
    observers.append(observe)  # after the routes were added: the callout reads this same list
    client = await aiohttp_client(app)
    url = AUTHZ_PREFIX + CHAT_PATH

    with caplog.at_level(logging.INFO, logger="sidecar.decision"):
        allowed = await client.post(url, data=BODY, headers={"Authorization": f"Bearer {DEMO_TOKEN}",
                                                             "X-Request-Id": "req-allowed"})
        denied = await client.post(url, data=BODY, headers={"Authorization": "Bearer cgt_not_a_token",
                                                            "X-Request-Id": "req-denied"})
    assert allowed.status == 200 and "x-cgt-decision" in allowed.headers
    assert denied.status == 401
    assert (await denied.json())["error"]["code"] == "invalid_api_key"

    assert [(request_id, status) for request_id, status, _ in seen] == [("req-allowed", None), ("req-denied", 401)]
    assert all(isinstance(seconds, float) and 0.0 <= seconds < 60.0 for _, _, seconds in seen)
    lines = [record for record in caplog.records if record.name == "sidecar.decision"]
    fields = [vars(record)["fields"] for record in lines]
    assert [(f["request_id"], f["status"], f["code"]) for f in fields] == [
        ("req-allowed", 200, None), ("req-denied", 401, "invalid_api_key")]
    assert [f["decision_ms"] for f in fields] == [round(seconds * 1000, 2) for _, _, seconds in seen]

    metrics = await (await client.get("/metrics")).text()
    assert _sample(metrics, "gateway_callout_duration_seconds_count") == 2
    # Only the denial is counted by the callout; the allowed one counts when its exchange ends.
    assert _sample(metrics, "gateway_requests_total") == 1
