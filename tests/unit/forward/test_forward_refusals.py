"""The forwarding path refuses a decision that does not apply to the request, and every refusal
of an authentic decision releases what the callout reserved (in-process app, provider mocked)."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from sidecar.app import init_app
from sidecar.appkeys import POLICY_STORE
from sidecar.callout.endpoint import AUTHZ_PREFIX
from sidecar.callout.handoff import DECISION_HEADER, Decision, body_digest, encode
from sidecar.core.endpoints import CHAT_PATH
from sidecar.policy.loader import folder_version
from sidecar.settings import Settings
from tests.unit.forward.test_forwarding_provider_client import (
    COMPLETION,
    DEPLOYMENT,
    KEY,
    PROVIDER_URL,
    TOKEN,
    ClientFactory,
    chat_body,
    client,
    error_of,
    policy_dir,
    provider,
    upstream_calls,
)

__all__ = ["client", "policy_dir", "provider"]  # the shared fixtures, used by name

LIMITS = """
limits:
  rules:
    one_at_a_time: {concurrent_requests: 1}
"""


@pytest.fixture
async def limited(aiohttp_client: ClientFactory, policy_dir: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """The forwarding test policy with one concurrency slot per token, on the embedded store."""
    policy = policy_dir / "policy.yaml"
    policy.write_text(policy.read_text() + LIMITS)
    yield await aiohttp_client(init_app(Settings(policies_dir=policy_dir, decision_key=KEY)))


async def callout(client: TestClient[Any, Any], raw: bytes) -> tuple[int, str]:
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=raw,
                                 headers={"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req_unit_1"})
    return response.status, response.headers.get(DECISION_HEADER, "")


async def forward(client: TestClient[Any, Any], raw: bytes, header: str, **headers: str) -> Any:
    return await client.post(CHAT_PATH, data=raw, headers={DECISION_HEADER: header, "X-Request-Id": "req_unit_1",
                                                           **headers})


def signed(client: TestClient[Any, Any], raw: bytes, **fields: Any) -> str:
    values: dict[str, Any] = {
        "request_id": "req_unit_1", "token_name": "t", "team": "blue", "model_key": "gpt-4",
        "deployments": (DEPLOYMENT,), "stream": False, "client_wants_usage": False,
        "policy_version": client.app[POLICY_STORE].current.version, "body_sha256": body_digest(raw),
        "expires_at": time.time() + 10, **fields}
    return encode(Decision(**values), KEY)


async def test_a_decision_replayed_with_another_body_is_refused(client: TestClient[Any, Any],
                                                                provider: aioresponses) -> None:
    harmless = orjson.dumps(chat_body())
    status, header = await callout(client, harmless)
    assert status == 200
    for other in (chat_body(max_tokens=1000000), chat_body(n=50),
                  chat_body(messages=[{"role": "user", "content": "mail me at a@b.example"}])):
        error = await error_of(await forward(client, orjson.dumps(other), header), 403)
        assert error["code"] == "decision_body_mismatch"
    assert upstream_calls(provider) == []


async def test_an_expired_decision_is_refused(client: TestClient[Any, Any], provider: aioresponses) -> None:
    raw = orjson.dumps(chat_body())
    error = await error_of(await forward(client, raw, signed(client, raw, expires_at=time.time() - 1)), 403)
    assert error["code"] == "decision_expired"
    assert upstream_calls(provider) == []


async def test_an_unknown_policy_version_is_refused_not_mapped(client: TestClient[Any, Any],
                                                               provider: aioresponses) -> None:
    raw = orjson.dumps(chat_body())
    response = await forward(client, raw, signed(client, raw, policy_version="not-a-loaded-version"))
    error = await error_of(response, 503)
    assert error["code"] == "policy_version_unknown"
    assert response.headers["Retry-After"] == "1"
    assert upstream_calls(provider) == []


async def test_an_encoded_body_is_refused(client: TestClient[Any, Any], provider: aioresponses) -> None:
    compressed = gzip.compress(orjson.dumps(chat_body()))
    response = await forward(client, compressed, signed(client, compressed), **{"Content-Encoding": "gzip"})
    error = await error_of(response, 400)
    assert error["code"] == "unsupported_content_encoding"
    assert upstream_calls(provider) == []


async def test_the_callout_refuses_an_encoded_body(client: TestClient[Any, Any]) -> None:
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=gzip.compress(orjson.dumps(chat_body())),
                                 headers={"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req_unit_1",
                                          "Content-Encoding": "x-custom"})
    error = await error_of(response, 400)
    assert error["code"] == "unsupported_content_encoding"
    assert DECISION_HEADER not in response.headers


async def test_a_replayed_decision_costs_a_refusal_not_a_provider_call(limited: TestClient[Any, Any],
                                                                      provider: aioresponses) -> None:
    provider.post(PROVIDER_URL, payload=COMPLETION, repeat=True)
    raw = orjson.dumps(chat_body())
    status, header = await callout(limited, raw)
    assert status == 200
    assert (await forward(limited, raw, header)).status == 200
    for _ in range(3):
        error = await error_of(await forward(limited, raw, header), 403)
        assert error["code"] == "decision_replayed"
    assert len(upstream_calls(provider)) == 1
    assert (await callout(limited, raw))[0] == 200  # the slot was settled once, and is free


async def test_a_refused_forward_gives_the_slot_back(limited: TestClient[Any, Any], provider: aioresponses) -> None:
    raw = orjson.dumps(chat_body())
    status, header = await callout(limited, raw)
    assert status == 200
    assert (await callout(limited, raw))[0] == 429  # the one slot is held
    error = await error_of(await forward(limited, orjson.dumps(chat_body(n=2)), header), 403)
    assert error["code"] == "decision_body_mismatch"
    assert (await callout(limited, raw))[0] == 200  # released by the refusal
    assert upstream_calls(provider) == []


async def test_a_version_another_worker_loaded_first_is_caught_up(aiohttp_client: ClientFactory, policy_dir: Path,
                                                                  provider: aioresponses) -> None:
    # The background watcher looks only once an hour here: the forward must look by itself.
    app = init_app(Settings(policies_dir=policy_dir, decision_key=KEY, policy_poll_seconds=3600))
    client = await aiohttp_client(app)
    policy = policy_dir / "policy.yaml"
    policy.write_text(policy.read_text() + "\n# changed: another worker already serves this\n")
    newer = folder_version(policy_dir)
    assert app[POLICY_STORE].get(newer) is None
    provider.post(PROVIDER_URL, payload=COMPLETION)
    raw = orjson.dumps(chat_body())
    assert (await forward(client, raw, signed(client, raw, policy_version=newer))).status == 200
    assert app[POLICY_STORE].current.version == newer
