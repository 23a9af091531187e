"""A gateway for the client-surface tests (/models, /embeddings): demo and faulty providers, tokens,
guardrails and limits aimed at embeddings, and small raw-HTTP helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
from multidict import CIMultiDict

from sidecar.core.tokens import hash_token
from sidecar.devtools.launcher import Stack, free_port
from tests.e2e.faults import PROVIDER_KEY_ENV, FaultyProvider
from tests.e2e.stacks import stack_settings, start_stack
from tests.e2e.support import DEMO_TOKEN, RESTRICTED_TOKEN, auth

METERED_TOKEN = "cgt_test_metered_00000000000000000000000000"
RPM_TOKEN = "cgt_test_rpm_0000000000000000000000000000000"
CONCURRENT_TOKEN = "cgt_test_concurrent_000000000000000000000000"
EMBEDDINGS_PATH = "/api/client/v1/embeddings"
MODELS_PATH = "/api/client/v1/models"
# Every model key of the policy below, in its order: what an unrestricted token lists.
MODEL_KEYS = ["gpt-4", "text-embedding-3-small", "acme/embed-v2", "embed-azure", "embed-fallback",
              "embed-5xx-fallback", "embed-breaker", "embed-slow", "embed-guarded", "embed-quota", "embed-concurrent"]


def write_policies(folder: Path, faulty: FaultyProvider) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    key = f"{{env: {PROVIDER_KEY_ENV}}}"
    (folder / "policy.yaml").write_text(f"""
providers:
  demo: {{type: openai, base_url: "${{GATEWAY_DEMO_PROVIDER_URL}}"}}
  faulty: {{type: openai, base_url: "{faulty.url}/v1", api_key: {key}}}
  azure: {{type: azure, base_url: "{faulty.url}", api_version: "2024-10-21", api_key: {key}}}
  dead: {{type: openai, base_url: "{dead}", timeouts: {{connect: 1s}}}}
  fragile:
    type: openai
    base_url: "{faulty.url}/v1"
    api_key: {key}
    breaker: {{consecutive_failures: 1, cooldown: 60s}}
  slow: {{type: openai, base_url: "{faulty.url}/v1", api_key: {key}, timeouts: {{first_byte: 1s, idle: 1s}}}}
models:
  gpt-4: {{deployments: [{{provider: demo, model: demo-gpt-4}}]}}
  text-embedding-3-small: {{category: embedding, deployments: [{{provider: demo, model: demo-embedding}}]}}
  acme/embed-v2: {{category: embedding, deployments: [{{provider: demo, model: demo-embedding}}]}}
  embed-azure: {{category: embedding, deployments: [{{provider: azure, model: emb-az}}]}}
  embed-fallback:
    category: embedding
    deployments: [{{provider: dead, model: gone}}, {{provider: demo, model: demo-embedding}}]
  embed-5xx-fallback:
    category: embedding
    deployments: [{{provider: faulty, model: emb-5xx}}, {{provider: azure, model: emb-az-b}}]
  embed-breaker: {{category: embedding, deployments: [{{provider: fragile, model: emb-breaker}}]}}
  embed-slow: {{category: embedding, deployments: [{{provider: slow, model: emb-slow}}]}}
  embed-guarded: {{category: embedding, deployments: [{{provider: faulty, model: emb-guarded}}]}}
  embed-quota: {{category: embedding, deployments: [{{provider: demo, model: demo-embedding}}]}}
  embed-concurrent: {{category: embedding, deployments: [{{provider: faulty, model: emb-concurrent}}]}}
tokens:
  demo: {{sha256: {hash_token(DEMO_TOKEN)}, team: demo-team}}
  restricted: {{sha256: {hash_token(RESTRICTED_TOKEN)}, models: [gpt-4]}}
  metered: {{sha256: {hash_token(METERED_TOKEN)}, models: [embed-quota]}}
  rpm: {{sha256: {hash_token(RPM_TOKEN)}, models: [embed-quota]}}
  concurrent: {{sha256: {hash_token(CONCURRENT_TOKEN)}, models: [embed-concurrent]}}
guardrails:
  no-email: {{type: pii, categories: [email], action: block, scope: {{models: [embed-guarded]}}}}
  mask-phone: {{type: pii, categories: [phone], action: mask, scope: {{models: [embed-guarded]}}}}
limits:
  models:
    embed-quota: {{price: {{prompt: 100000, completion: 0}}}}   # $0.10 a token: 10 tokens make $1
  rules:
    metered-spend:
      match: {{tokens: [metered]}}
      spend_per_day: 1
      tokens_per_day: 1000
    rpm:
      match: {{tokens: [rpm]}}
      requests_per_minute: 1
    one-at-a-time:
      match: {{tokens: [concurrent]}}
      concurrent_requests: 1
""", encoding="utf-8")
    return folder


def start(workdir: Path, faulty: FaultyProvider) -> Stack:
    settings = stack_settings(write_policies(workdir / "policies", faulty))
    return start_stack(workdir, settings, extra_env={PROVIDER_KEY_ENV: "sk-faulty-test-key"})


async def request(stack: Stack, method: str, path: str, body: Any = None, *, token: str | None = DEMO_TOKEN,
                  data: bytes | None = None, headers: dict[str, str] | None = None,
                  ) -> tuple[int, CIMultiDict[str], Any]:
    """(status, headers, decoded JSON body) of one raw HTTP call through Envoy."""
    sent = {**(auth(token) if token else {}), **(headers or {})}
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    async with aiohttp.ClientSession() as session, session.request(
            method, stack.base_url + path, data=payload, headers=sent) as response:
        raw = await response.read()
        assert response.headers["Content-Type"].startswith("application/json"), raw[:200]
        assert response.headers["x-request-id"], "every answer carries a request id"
        return response.status, CIMultiDict(response.headers), json.loads(raw)


def sdk(stack: Stack, token: str = DEMO_TOKEN) -> openai.AsyncOpenAI:
    """The official SDK pointed at the gateway (no retries: every answer is the gateway's own)."""
    return openai.AsyncOpenAI(base_url=stack.base_url + "/api/client/v1", api_key=token, max_retries=0)
