"""The `breaker:` blocks, deployment priorities and weights in policy files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.core.kinds import Outcome
from sidecar.core.routes import BreakerConfig, Deployment, Timeouts
from sidecar.policy.loader import load_policy
from sidecar.policy.reader import PolicyError

PROVIDERS = """
providers:
  a:
    type: openai
    base_url: http://127.0.0.1:1/v1
{a_extra}
  b:
    type: openai
    base_url: http://127.0.0.1:2/v1
models:
  m:
    deployments:
      - {{provider: a, model: one}}
      - {{provider: b, model: two, weight: 2.5}}
      - {{provider: b, model: three, priority: 0}}
"""


def load(tmp_path: Path, a_extra: str = "", top: str = "") -> list[Deployment]:
    (tmp_path / "p.yaml").write_text(top + PROVIDERS.format(a_extra=a_extra), encoding="utf-8")
    route = load_policy(tmp_path).models.routes["m"]
    return list(route.deployments)


def errors(tmp_path: Path, a_extra: str = "", top: str = "") -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, a_extra, top)
    return [e.split(": ", 1)[1] for e in caught.value.errors]


def test_defaults_without_any_breaker_block(tmp_path: Path) -> None:
    one, two, three = load(tmp_path)
    assert one.breaker == two.breaker == BreakerConfig()
    assert [(d.priority, d.weight) for d in (one, two, three)] == [(0, 1.0), (1, 2.5), (0, 1.0)]


def test_provider_block_overrides_the_global_default_key_by_key(tmp_path: Path) -> None:
    top = "breaker: {consecutive_failures: 9, cooldown: 45s, error_rate: 0.25, failure_on: [connect, 429]}\n"
    a_extra = "    breaker: {cooldown: 200ms, half_open_probes: 3, error_rate: null}"
    one, two, _ = load(tmp_path, a_extra, top)
    assert one.breaker == BreakerConfig(
        consecutive_failures=9, cooldown=0.2, half_open_probes=3, error_rate=None,
        failure_on=frozenset({Outcome.CONNECT, Outcome.RATE_LIMITED}))
    assert two.breaker == BreakerConfig(
        consecutive_failures=9, cooldown=45.0, error_rate=0.25, failure_on=frozenset({Outcome.CONNECT, Outcome.RATE_LIMITED}))


def test_every_key(tmp_path: Path) -> None:
    a_extra = ("    breaker: {enabled: false, consecutive_failures: 2, error_rate: 0.5, window: 2m,"
               " min_requests: 10, cooldown: 1s, half_open_probes: 2, failure_on: [5xx, timeout]}")
    one, *_ = load(tmp_path, a_extra)
    assert one.breaker == BreakerConfig(
        enabled=False, consecutive_failures=2, error_rate=0.5, window=120.0, min_requests=10, cooldown=1.0,
        half_open_probes=2, failure_on=frozenset({Outcome.SERVER_ERROR, Outcome.TIMEOUT}))


@pytest.mark.parametrize(("a_extra", "message"), [
    ("    breaker: {cooldown: 0s}", "providers.a.breaker.cooldown: must be longer than zero"),
    ("    breaker: {cooldown: soon}", "providers.a.breaker.cooldown: must be a duration such as 250ms, 30s, 5m or 1h"),
    ("    breaker: {consecutive_failures: 0}", "providers.a.breaker.consecutive_failures: must be at least 1"),
    ("    breaker: {error_rate: 2}", "providers.a.breaker.error_rate: must be between 0.01 and 1.0"),
    ("    breaker: {failure_on: [5xx, 404]}", "providers.a.breaker.failure_on[1]: must be one of connect, timeout, 5xx, 429"),
    ("    breaker: {failure_on: 5xx}", "providers.a.breaker.failure_on: must be a list"),
    ("    breaker: {cooldwn: 1s}", "providers.a.breaker.cooldwn: unknown key"),
    ("    breaker: {enabled: yes please}", "providers.a.breaker.enabled: must be true or false"),
    ("    breaker: off", "providers.a.breaker: must be a mapping"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, a_extra: str, message: str) -> None:
    assert errors(tmp_path, a_extra) == [message]


def test_errors_in_the_global_block(tmp_path: Path) -> None:
    assert errors(tmp_path, top="breaker: {half_open_probes: 0}\n") == [
        "breaker.half_open_probes: must be at least 1"]


def test_error_lines_point_at_the_value(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, "    breaker:\n      cooldown: -1")
    assert caught.value.errors[0].startswith(f"{tmp_path / 'p.yaml'}:7: providers.a.breaker.cooldown:")


@pytest.mark.parametrize(("entry", "message"), [
    ("{provider: b, model: x, priority: -1}", "models.m.deployments[3].priority: must be at least 0"),
    ("{provider: b, model: x, weight: 0}", "models.m.deployments[3].weight: must be between 0.001 and 1000000.0"),
])
def test_priority_and_weight_errors(tmp_path: Path, entry: str, message: str) -> None:
    text = PROVIDERS.format(a_extra="") + f"      - {entry}\n"
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert [e.split(": ", 1)[1] for e in caught.value.errors] == [message]


def test_a_deployment_may_override_its_providers_timeouts_key_by_key(tmp_path: Path) -> None:
    text = PROVIDERS.format(a_extra="    timeouts: {connect: 1s, idle: 9s}") + \
        "      - {provider: a, model: four, timeouts: {idle: 250ms, total: 1m}}\n"
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    one, _, _, four = load_policy(tmp_path).models.routes["m"].deployments
    assert one.timeouts == Timeouts(connect=1.0, idle=9.0)
    assert four.timeouts == Timeouts(connect=1.0, idle=0.25, total=60.0)
