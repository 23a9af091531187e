"""Each token's limits with used and left, read from the store (memory and a real Redis alike)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sidecar.core.tokens import hash_token
from sidecar.features.quotas.service import QuotaService
from sidecar.features.status.quota_view import token_limits
from sidecar.policy.loader import load_policy
from sidecar.policy.snapshot import Policy
from tests.unit.features.quotas.conftest import Store
from tests.unit.features.quotas.test_service import TOKEN, decide


def _policy(tmp_path: Path, prefix: str) -> Policy:
    (tmp_path / "p.yaml").write_text(f"""
providers:
  demo: {{type: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  gpt-4: {{deployments: [{{provider: demo, model: m}}]}}
  mini: {{deployments: [{{provider: demo, model: n}}]}}
tokens:
  t: {{sha256: {hash_token(TOKEN)}, team: red}}
  other: {{sha256: {hash_token("cgt_other_0000000000000000")}, models: [mini]}}
limits:
  store: {{key_prefix: "{prefix}"}}
  models: {{gpt-4: {{completion_tokens: 100, price: {{prompt: 10, completion: 20}}}}}}
  rules:
    monthly: {{match: {{tokens: [t]}}, tokens_per_month: 10000, spend_per_month: 5}}
    per-model: {{per: [token, model], requests_per_minute: 60}}
""")
    return load_policy(tmp_path)


async def test_limits_per_token_with_used_and_left(store: Store, unique: str, tmp_path: Path) -> None:
    policy = _policy(tmp_path, unique)
    service = QuotaService(await store.replica(), unique)  # another replica admits; this one only looks
    await decide(service, policy)
    views, error = await token_limits(policy, store.backend, unique, now=time.time())
    assert error is None
    shown = {(v.limit, v.scope): v for v in views["t"]}
    assert set(shown) == {("monthly.tokens_per_month", "token=t"), ("monthly.spend_per_month", "token=t"),
                          ("per-model.requests_per_minute", "token=t,model=gpt-4"),
                          ("per-model.requests_per_minute", "token=t,model=mini")}
    tokens = shown["monthly.tokens_per_month", "token=t"]
    assert tokens.used is not None and tokens.used > 100 and tokens.left == tokens.cap - tokens.used
    assert tokens.resets_at is not None and tokens.resets_at.endswith("Z")
    spend = shown["monthly.spend_per_month", "token=t"]
    assert spend.unit == "spend" and spend.cap == 5 and spend.used == pytest.approx(tokens.used * 10 / 1e6, abs=1e-3)
    assert shown["per-model.requests_per_minute", "token=t,model=gpt-4"].used == pytest.approx(1, abs=0.1)  # draining
    assert shown["per-model.requests_per_minute", "token=t,model=mini"].used == 0
    # `other` may use `mini` only: one per-model counter, nothing of `t`'s.
    assert [(v.limit, v.scope, v.used) for v in views["other"]] == [
        ("per-model.requests_per_minute", "token=other,model=mini", 0)]
