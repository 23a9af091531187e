"""The `limits:` section: what it builds, and the line-aware errors for what it rejects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sidecar.core.limits import Identity
from sidecar.policy.loader import load_policy
from sidecar.policy.reader import PolicyError

REPO = Path(__file__).resolve().parents[4]
TOKENS = """
tokens:
  alice:
    sha256: 0fb023c22f098f6159890cb1c5b5ab288be329d09ffe6743a0b7942e0866a850
    team: research
"""


def folder(tmp_path: Path, limits: str) -> Path:
    shutil.copy(REPO / "policies" / "models.yaml", tmp_path / "models.yaml")
    (tmp_path / "tokens.yaml").write_text(TOKENS)
    (tmp_path / "limits.yaml").write_text(limits)
    return tmp_path


def errors(tmp_path: Path, limits: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy(folder(tmp_path, limits))
    return [e.split("limits.yaml:", 1)[1] for e in caught.value.errors]


def test_a_full_limits_section(tmp_path: Path) -> None:
    policy = load_policy(folder(tmp_path, """
limits:
  timezone: Europe/Berlin
  store: {backend: redis, redis_url: "redis://127.0.0.1:6379/0", timeout: 100ms, key_prefix: gw}
  estimate: {chars_per_token: 3.5, completion_tokens: 256}
  models:
    gpt-4: {completion_tokens: 512, price: {prompt: 30, completion: 60}}
  rules:
    per-token:
      requests_per_minute: 60
      tokens_per_minute: 40000
      concurrent_requests: 4
    team-budget:
      match: {teams: [research], models: [gpt-4]}
      per: [team]
      spend_per_month: 250.5
      tokens_per_day: 1000000
      shadow: true
      on_backend_error: closed
"""))
    limits = policy.limits
    assert limits.timezone == "Europe/Berlin"
    assert (limits.store.backend, limits.store.redis_url, limits.store.timeout) == (
        "redis", "redis://127.0.0.1:6379/0", 0.1)
    assert limits.chars_per_token == 3.5 and limits.default_completion_tokens("other") == 256
    assert limits.default_completion_tokens("gpt-4") == 512
    price = limits.price("gpt-4")
    assert price is not None and price.micro_usd(1000, 100) == 36000  # $0.036
    names = [limit.name for limit in limits.limits]
    assert names == ["per-token.requests_per_minute", "per-token.tokens_per_minute",
                     "per-token.concurrent_requests", "team-budget.tokens_per_day", "team-budget.spend_per_month"]
    spend = limits.limits[-1]
    assert (spend.cap, spend.per, spend.shadow, spend.fail_open) == (250_500_000, ("team",), True, False)
    research = Identity("alice", "research", "gpt-4")
    assert len(limits.applicable(research)) == 5
    assert len(limits.applicable(Identity("bob", None, "gpt-4"))) == 3
    assert spend.scope(research) == "team=research"


def test_no_limits_section_means_no_limits(tmp_path: Path) -> None:
    shutil.copy(REPO / "policies" / "models.yaml", tmp_path / "models.yaml")
    policy = load_policy(tmp_path)
    assert policy.limits.limits == () and policy.limits.store.backend == "memory"


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    found = errors(tmp_path, """
limits:
  timezone: Mars/Olympus
  store: {backend: redis}
  models:
    gpt-5: {completion_tokens: 0}
  rules:
    a:
      requests_per_minute: -1
      per: [token, planet]
      on_backend_error: maybe
    b:
      match: {tokens: [mallory]}
      requests_per_hour: 5
    c:
      shadow: true
""")
    assert found == [
        "3: limits.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as UTC or Europe/Berlin)",
        "4: limits.store: the redis backend needs redis_url (e.g. redis_url: ${REDIS_URL})",
        "6: limits.models.gpt-5: unknown model 'gpt-5'",
        "6: limits.models.gpt-5.completion_tokens: must be at least 1",
        "10: limits.rules.a.per: must list distinct values out of token, team, model ([] means one shared counter)",
        "11: limits.rules.a.on_backend_error: must be one of open, closed",
        "9: limits.rules.a.requests_per_minute: must be at least 1",
        "13: limits.rules.b.match.tokens: unknown token 'mallory'",
        "14: limits.rules.b.requests_per_hour: unknown key",
        "13: limits.rules.b: give at least one limit: requests_per_minute, tokens_per_minute, "
        "concurrent_requests, tokens_per_day, tokens_per_month, spend_per_day, spend_per_month",
        "16: limits.rules.c: give at least one limit: requests_per_minute, tokens_per_minute, "
        "concurrent_requests, tokens_per_day, tokens_per_month, spend_per_day, spend_per_month",
    ]


def test_redis_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_QUOTA_REDIS", "redis://127.0.0.1:7000/2")
    policy = load_policy(folder(tmp_path, "limits:\n  store: {backend: redis, redis_url: '${TEST_QUOTA_REDIS}'}\n"))
    assert policy.limits.store.redis_url == "redis://127.0.0.1:7000/2"


def test_every_limit_kind_has_a_spec_and_counters_decode_strictly() -> None:
    from sidecar.core.limits import COUNTERS, KINDS, UNITS, LimitKind, counter_named, unit_named

    assert set(KINDS) == set(LimitKind)
    assert {spec.counter for spec in KINDS.values()} == set(COUNTERS)
    assert [counter_named(name) for name in ("bucket", "window", "slots")] == list(COUNTERS)
    with pytest.raises(ValueError, match="unknown counter 'minute'"):
        counter_named("minute")
    assert {spec.unit for spec in KINDS.values()} == set(UNITS) == {unit_named(u) for u in UNITS}
    with pytest.raises(ValueError, match="unknown unit 'usd'"):
        unit_named("usd")
