"""The completion allowance the provider is held to, and the budget with room for less (issue 15, repro 07)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.callout.pipeline import Check
from sidecar.core.errors import QuotaExhausted, RateLimited
from sidecar.features.quotas.service import QuotaService
from sidecar.features.quotas.settlement import cap_completion
from tests.unit.features.quotas.conftest import Store
from tests.unit.features.quotas.test_service import BODY, PROMPT, decide, level, policy


@pytest.fixture
def service(store: Store, unique: str) -> QuotaService:
    return QuotaService(store.backend, key_prefix=unique)


def provider_body(check: Check, client: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {**BODY, **(client or {})}
    cap_completion(body, check.decision())
    return body


async def test_a_token_limit_caps_a_request_without_max_tokens(service: QuotaService, tmp_path: Path) -> None:
    check = await decide(service, policy(tmp_path, "    day: {tokens_per_day: 100000}"))
    assert check.extra["quota"]["cap"] == 100  # the model's completion_tokens
    assert provider_body(check)["max_completion_tokens"] == 100


async def test_a_clients_own_max_tokens_is_never_changed(service: QuotaService, tmp_path: Path) -> None:
    body = {**BODY, "max_tokens": 30}
    check = await decide(service, policy(tmp_path, "    day: {tokens_per_day: 100000}"), body)
    assert check.extra["quota"]["cap"] is None
    sent = provider_body(check, {"max_tokens": 30})
    assert (sent["max_tokens"], "max_completion_tokens" in sent) == (30, False)


@pytest.mark.parametrize("rules", ["    rpm: {requests_per_minute: 10}",
                                   "    shadow: {tokens_per_day: 10, shadow: true}"])
async def test_no_cap_without_an_enforced_token_counting_limit(service: QuotaService, tmp_path: Path,
                                                               rules: str) -> None:
    check = await decide(service, policy(tmp_path, rules))
    assert check.extra["quota"]["cap"] is None
    assert "max_completion_tokens" not in provider_body(check)


async def test_a_budget_with_room_for_less_reserves_and_caps_what_is_left(service: QuotaService,
                                                                          tmp_path: Path) -> None:
    limit = 2 * (PROMPT + 100) + PROMPT + 40
    current = policy(tmp_path, f"    day: {{tokens_per_day: {limit}}}")
    for _ in range(2):
        assert (await decide(service, current)).extra["quota"]["cap"] == 100
    last = await decide(service, current)
    assert (last.extra["quota"]["cap"], last.extra["quota"]["completion"]) == (40, 40)
    with pytest.raises(QuotaExhausted) as denied:  # not even one completion token left
        await decide(service, current)
    assert f"limit {limit}, used {limit}," in denied.value.message  # exactly the limit, never over


async def test_a_default_allowance_larger_than_the_limit_itself_shrinks_to_fit(service: QuotaService,
                                                                               tmp_path: Path) -> None:
    check = await decide(service, policy(tmp_path, f"    tpm: {{tokens_per_minute: {PROMPT + 25}}}"))
    assert check.extra["quota"]["cap"] == 25


async def test_an_explicit_max_tokens_over_the_room_is_still_denied(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, f"    day: {{tokens_per_day: {PROMPT + 50}}}")
    with pytest.raises(RateLimited):
        await decide(service, current, {**BODY, "max_tokens": 80})


async def test_n_choices_share_the_room(service: QuotaService, tmp_path: Path) -> None:
    check = await decide(service, policy(tmp_path, f"    day: {{tokens_per_day: {PROMPT + 90}}}"), {**BODY, "n": 3})
    assert (check.extra["quota"]["cap"], check.extra["quota"]["completion"]) == (30, 90)


async def test_a_spend_budget_caps_at_what_it_can_pay_for(service: QuotaService, tmp_path: Path) -> None:
    # Prices: prompt 10, completion 20 micro-USD a token; room for the prompt plus 30 completion tokens.
    budget = (PROMPT * 10 + 30 * 20) / 1_000_000
    check = await decide(service, policy(tmp_path, f"    spend: {{spend_per_day: {budget}}}"))
    assert check.extra["quota"]["cap"] == 30


async def test_a_dry_run_shows_the_cap_and_reserves_nothing(service: QuotaService, tmp_path: Path) -> None:
    current = policy(tmp_path, "    day: {tokens_per_day: 100000}")
    check = await decide(service, current, dry_run=True)
    assert check.trace["limits"]["completion_cap"] == 100
    assert (check.extra["quota"]["cap"], check.extra["quota"]["charges"]) == (100, [])
    assert await level(service, current) == 0
