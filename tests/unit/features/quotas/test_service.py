"""The callout stage and the finisher on both stores: reserve, deny, dry runs, settle every ending."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from sidecar.callout.pipeline import Check, DecisionPipeline
from sidecar.core.errors import RateLimited, ServiceUnavailable
from sidecar.core.tokens import hash_token
from sidecar.core.types import Usage
from sidecar.features.quotas.backend import BackendUnavailable
from sidecar.features.quotas.estimate import prompt_tokens
from sidecar.features.quotas.service import QuotaService
from sidecar.forward.exchange import Exchange
from sidecar.policy.loader import load_policy
from sidecar.policy.snapshot import Policy
from sidecar.providers.openai_compat import OpenAICompatible
from tests.unit.features.quotas.conftest import Store

TOKEN = "cgt_unit_quota_token_000000000"


def policy(tmp_path: Path, rules: str) -> Policy:
    (tmp_path / "p.yaml").write_text(f"""
providers:
  demo: {{type: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  gpt-4: {{deployments: [{{provider: demo, model: m}}]}}
tokens:
  t: {{sha256: {hash_token(TOKEN)}, team: red}}
limits:
  models: {{gpt-4: {{completion_tokens: 100, price: {{prompt: 10, completion: 20}}}}}}
  rules:
{rules}
""")
    return load_policy(tmp_path)


BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "x" * 40}]}
PROMPT = prompt_tokens(BODY, 4.0)  # 10 + 4 + 3


async def decide(service: QuotaService, policy: Policy, body: Mapping[str, object] = BODY,
                 dry_run: bool = False) -> Check:
    pipeline = DecisionPipeline([service.check])
    check = Check(policy, orjson.dumps(body), f"Bearer {TOKEN}", "req_1")
    if dry_run:
        check.dry_run = True  # the `explain` flag
        check.trace = {}
    for stage in pipeline.stages:
        await stage(check)
    return check


def exchange(check: Check, *, status: int = 200, usage: Usage | None = None, chars: int = 0,
             stream: bool = False) -> Exchange:
    assert check.route is not None
    decision = check.decision()
    if stream:
        decision = type(decision)(**{**decision.__dict__, "stream": True})
    deployment = check.route.deployments[0]
    return Exchange(decision=decision, policy=check.policy, deployment=deployment,
                    provider=OpenAICompatible(deployment), started=0.0, status=status, usage=usage,
                    completion_chars=chars)


@pytest.fixture
def service(store: Store, unique: str) -> QuotaService:
    return QuotaService(store.backend, key_prefix=unique)


async def level(service: QuotaService, policy: Policy) -> int:
    """Tokens counted today, read by a dry run."""
    check = await decide(service, policy, dry_run=True)
    return int(check.trace["limits"]["applicable"][0]["used"])


@pytest.mark.parametrize(("ending", "counted"), [
    ({"usage": Usage(30, 12)}, 42),  # the provider's usage replaces the estimate
    ({"stream": True, "chars": 21}, PROMPT + 6),  # stream cut short: prompt + relayed text
    ({"status": 502}, 0),  # failed before answering: nothing generated
    ({"chars": 21}, PROMPT + 6),  # whole answer without usage: prompt + its text, like a cut stream
])
async def test_settling_each_ending(service: QuotaService, tmp_path: Path, ending: dict[str, object], counted: int) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    day = "    day: {tokens_per_day: 100000}\n"
    current = policy(tmp_path / "a", day + "    conc: {concurrent_requests: 1}")
    day_only = policy(tmp_path / "b", day)  # reads the same counter, ignores the slot
    check = await decide(service, current)
    assert check.extra["quota"]["prompt"] == PROMPT and check.extra["quota"]["completion"] == 100
    assert await level(service, day_only) == PROMPT + 100
    with pytest.raises(RateLimited):
        await decide(service, current)
    await service.finish(exchange(check, **ending))  # type: ignore[arg-type]
    assert await level(service, day_only) == counted
    await decide(service, current)  # the concurrency slot was released


async def test_spend_is_settled_at_the_model_price(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, "    spend: {spend_per_month: 1.0}")
    check = await decide(service, current)
    assert await level(service, current) == PROMPT * 10 + 100 * 20  # micro-USD
    await service.finish(exchange(check, usage=Usage(1000, 500)))
    assert await level(service, current) == 1000 * 10 + 500 * 20


async def test_a_dry_run_reserves_nothing_and_explains(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, "    rpm: {requests_per_minute: 1, per: [team]}")
    for _ in range(3):
        check = await decide(service, current, dry_run=True)
        assert check.extra["quota"]["charges"] == []  # nothing reserved, nothing to settle
    assert check.trace["limits"]["applicable"] == [
        {"limit": "rpm.requests_per_minute", "cap": 1, "used": 0, "requested": 1, "fits": True, "shadow": False}]
    await decide(service, current)
    with pytest.raises(RateLimited):
        await decide(service, current)
    with pytest.raises(RateLimited):  # the dry run gives the real answer too
        await decide(service, current, dry_run=True)


class Down:
    """A store that is unreachable."""

    async def reserve(self, *args: object, **kwargs: object) -> None:
        raise BackendUnavailable("down")

    async def settle(self, *args: object, **kwargs: object) -> None:
        raise BackendUnavailable("down")

    async def claim(self, *args: object, **kwargs: object) -> None:
        raise BackendUnavailable("down")


@pytest.mark.parametrize(("on_error", "admitted"), [("open", True), ("closed", False)])
async def test_store_outage_fails_open_or_closed(tmp_path: Path, on_error: str, admitted: bool) -> None:
    service = QuotaService(Down())  # type: ignore[arg-type]
    current = policy(tmp_path, f"    r: {{requests_per_minute: 5, on_backend_error: {on_error}}}")
    if admitted:
        check = await decide(service, current)
        assert check.client_headers == {"x-gateway-quota-degraded": "store-unavailable"}
        assert "quota" not in check.extra
        assert service.counters.failed_open == 1
    else:
        with pytest.raises(ServiceUnavailable) as denied:
            await decide(service, current)
        assert denied.value.code == "quota_backend_unavailable"
        assert service.counters.failed_closed == 1


async def test_a_failed_settlement_is_counted_not_raised(store: Store, tmp_path: Path, unique: str) -> None:
    current = policy(tmp_path, "    c: {concurrent_requests: 3}")
    check = await decide(QuotaService(store.backend, key_prefix=unique), current)
    broken = QuotaService(Down())  # type: ignore[arg-type]
    await broken.finish(exchange(check, usage=Usage(1, 1)))
    assert broken.counters.settle_errors == 1
