"""The precomputed per-policy rules give what the plain functions give, and never outlive a reload."""

from __future__ import annotations

import math
import random
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from sidecar.core.limits import (
    WIRE_KINDS,
    Identity,
    Limit,
    LimitKind,
    LimitsPolicy,
    ModelQuotaSettings,
    Price,
)
from sidecar.core.walk import request_texts
from sidecar.features.quotas.admission import plan_charges
from sidecar.features.quotas.allowance import fitted
from sidecar.features.quotas.applicable import rulebook
from sidecar.features.quotas.backend import Charge
from sidecar.features.quotas.estimate import Estimate, prompt_tokens
from sidecar.features.quotas.headers import Level, admitted_headers, rate_limit_headers
from sidecar.features.quotas.memory_backend import MemoryBackend
from sidecar.features.quotas.planning import LEASE_MARGIN, charges, initial_allowance, route_lease
from sidecar.features.quotas.service import QuotaService
from sidecar.features.quotas.settlement import RESERVATION, Record
from sidecar.features.quotas.windows import current_window
from sidecar.policy.loader import load_policy
from tests.unit.features.quotas.test_service import decide, policy

LIMITS = (
    Limit("a", LimitKind.REQUESTS_PER_MINUTE, 50),
    Limit("a", LimitKind.TOKENS_PER_MINUTE, 9000, per=("token", "model")),
    Limit("a", LimitKind.CONCURRENT_REQUESTS, 3),
    Limit("b", LimitKind.TOKENS_PER_DAY, 20000, per=("team",), teams=frozenset({"red"})),
    Limit("b", LimitKind.SPEND_PER_MONTH, 700_000, per=(), models=frozenset({"gpt-4"}), shadow=True),
    Limit("c", LimitKind.TOKENS_PER_MONTH, 10**9, tokens=frozenset({"t"}), shadow=True),
    Limit("c", LimitKind.SPEND_PER_DAY, 5_000, per=("token", "team", "model")),
    Limit("d", LimitKind.REQUESTS_PER_MINUTE, 7, per=("model",), models=frozenset({"cheap"})),
)
POLICY = LimitsPolicy(LIMITS, timezone="Europe/Berlin",
                      models={"gpt-4": ModelQuotaSettings(price=Price(10, 20)), "cheap": ModelQuotaSettings()})
IDENTITIES = [Identity(token, team, model) for token in ("t", "u") for team in ("red", "blue", None)
              for model in ("gpt-4", "cheap")]


async def test_a_reload_never_serves_the_rules_of_the_policy_before(tmp_path: Path) -> None:
    service = QuotaService(MemoryBackend(None))
    first = policy(tmp_path, "    r: {requests_per_minute: 50}")
    assert rulebook(first.limits) is rulebook(first.limits)  # built once per snapshot
    assert (await decide(service, first)).client_headers["x-ratelimit-limit-requests"] == "50"
    second = policy(tmp_path, "    r: {requests_per_minute: 70}\n    m: {tokens_per_minute: 900}")
    assert rulebook(second.limits) is not rulebook(first.limits)
    check = await decide(service, second)
    assert check.client_headers["x-ratelimit-limit-requests"] == "70"
    assert check.client_headers["x-ratelimit-limit-tokens"] == "900"
    assert [row.key.split(":")[1] for row in Record.from_json(check.extra["quota"]).charges] == ["r", "m"]
    third = policy(tmp_path, "    other: {requests_per_minute: 5, match: {teams: [blue]}}")
    check = await decide(service, third)  # no limit applies any more: nothing reserved, no headers
    assert check.client_headers == {} and RESERVATION.name not in check.extra


@pytest.mark.parametrize("who", IDENTITIES)
def test_the_rules_charge_what_plan_charges_charges(who: Identity) -> None:
    book = rulebook(POLICY)
    applied = book.applicable("pfx", who.token, who.team, who.model)
    limits = POLICY.applicable(who)
    if not limits:
        assert applied is None
        return
    assert applied is not None and list(applied.limits) == limits and applied.who == who
    assert book.applicable("pfx", who.token, who.team, who.model) is applied
    assert [rule.scope for rule in applied.rules] == [limit.scope(who) for limit in limits]
    zone = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 3, 28, 23, 59, 59, tzinfo=zone).timestamp()
    for estimate in (Estimate(0, 0), Estimate(17, 1024), Estimate(12345, 7)):
        for moment in (now, now + 1, now + 40 * 86400):
            expected = plan_charges(limits, who, estimate, POLICY.price(who.model), zone, "pfx", 11.0, moment)
            assert charges(book, applied, estimate, 11.0, moment) == expected
    other = book.applicable("other", who.token, who.team, who.model)
    assert other is not None and all(rule.key.startswith("{other}:") for rule in other.rules)


def test_the_initial_allowance_is_fitted_to_the_limits_themselves() -> None:
    rng = random.Random(5)
    tight = LimitsPolicy((Limit("s", LimitKind.TOKENS_PER_MINUTE, 2000), Limit("s", LimitKind.TOKENS_PER_DAY, 900),
                          Limit("s", LimitKind.SPEND_PER_DAY, 40_000, shadow=True)),
                         models={"gpt-4": ModelQuotaSettings(price=Price(10, 20))})
    spend = LimitsPolicy((Limit("p", LimitKind.SPEND_PER_DAY, 40_000), Limit("p", LimitKind.CONCURRENT_REQUESTS, 1)),
                         models={"gpt-4": ModelQuotaSettings(price=Price(10, 20))})
    for limits in (POLICY, tight, spend):
        for who in IDENTITIES:
            applied = rulebook(limits).applicable("k", who.token, who.team, who.model)
            if applied is None or not applied.counts_tokens:
                continue
            for _ in range(300):
                estimate, n = Estimate(rng.randrange(3000), rng.randrange(1, 3000)), rng.choice([1, 1, 2, 5])
                cap = estimate.completion_tokens // n
                allowance = fitted(estimate, n, applied.rules, [0.0] * len(applied.rules), applied.price)
                expected = (allowance.estimate, allowance.cap) if allowance and allowance.cap < cap else (estimate, cap)
                assert initial_allowance(applied, estimate, n) == expected


def test_admitted_headers_are_the_rate_limit_headers_of_the_levels() -> None:
    rng = random.Random(7)
    book = rulebook(POLICY)
    for _ in range(3000):
        who = rng.choice(IDENTITIES)
        applied = book.applicable("k", who.token, who.team, who.model)
        if applied is None:
            continue
        now = 1_780_000_000 + rng.random() * 1e6
        found = charges(book, applied, Estimate(rng.randrange(500), rng.randrange(500)), 5.0, now)
        # Levels at, under and over the caps, ties included (the first of equals must win).
        used = tuple(rng.choice([0.0, float(c.cap), c.cap * rng.random(), c.cap * 1.5, 3.0, -1e-9]) for c in found)
        store_now = now + rng.choice([0.0, 0.5, 1e6])
        levels = [Level(limit, charge, u, store_now) for limit, charge, u in zip(applied.limits, found, used,
                                                                                strict=True)]
        expected = rate_limit_headers(levels)
        got = admitted_headers(applied.request_headers, applied.token_headers, found, used, store_now)
        assert got == expected and list(got) == list(expected)
        assert applied.header_names == frozenset(name.lower() for name in expected)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Asuncion", "Australia/Lord_Howe",
                                  "Pacific/Apia", "America/Santiago"])
def test_windows_are_those_of_the_calendar(zone: str) -> None:
    tz = ZoneInfo(zone)
    book = rulebook(LimitsPolicy(timezone=zone))
    start = datetime(2026, 1, 1, tzinfo=tz).timestamp()
    moments = [start + step * 1800.0 + offset for step in range(0, 365 * 48, 7) for offset in (0.0, -0.001)]
    # Two years of moments, forwards, then a shuffled replay: a cached window is only ever the current one.
    shuffled = list(moments)
    random.Random(3).shuffle(shuffled)
    for moment in moments + shuffled + _transitions(tz, start):
        for period in ("day", "month"):
            assert book.window(period, moment) == current_window(period, tz, moment), (period, moment)


def _transitions(tz: ZoneInfo, start: float) -> list[float]:
    """The instants around every change of UTC offset in a year (and every local midnight)."""
    found = []
    for hour in range(366 * 24):
        moment = start + hour * 3600.0
        before, after = datetime.fromtimestamp(moment, tz), datetime.fromtimestamp(moment + 3600, tz)
        if before.utcoffset() != after.utcoffset() or before.date() != after.date():
            found += [moment + second for second in range(0, 3601, 300)] + [moment + 3599.999]
    return found


PLAIN = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * 37}]
BODIES: list[dict[str, Any]] = [
    {"messages": PLAIN},
    {"messages": []},
    {},
    {"messages": None},
    {"messages": [*PLAIN, "not a message", 7]},
    {"messages": [{"content": "no role"}, {"role": "user"}]},
    {"messages": [{"role": "user", "content": None}]},
    {"messages": [*PLAIN, {"role": "user", "name": "bob", "content": "hi"}]},
    {"messages": [*PLAIN, {"role": "assistant", "content": "a", "refusal": "no thanks"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url"}]}]},
    {"messages": [{"role": "assistant", "content": None,
                   "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\": 1}"}}]}]},
    {"messages": PLAIN, "tools": [{"type": "function", "function": {"name": "f"}}]},
    {"messages": {"role": "user", "content": "not a list"}},
]


@pytest.mark.parametrize("body", BODIES)
def test_plain_messages_are_estimated_as_the_walker_reads_them(body: dict[str, Any]) -> None:
    assert prompt_tokens(body, 4.0) == _walked(body, 4.0) and prompt_tokens(body, 3.3) == _walked(body, 3.3)


def _walked(body: dict[str, Any], chars_per_token: float) -> int:
    """The estimate as defined (estimate.py's docstring), every text read by the walker."""
    chars = sum(len(text.text) for text in request_texts(body, names=True, definitions=False))
    messages = body.get("messages") or []
    images = sum(1 for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
                 for part in m["content"] if isinstance(part, dict) and part.get("type") == "image_url")
    if body.get("tools"):
        chars += len(orjson.dumps(body["tools"]))
    return math.ceil(chars / chars_per_token) + 4 * len(messages) + 3 + 85 * images


def test_the_reservation_travels_in_the_same_json() -> None:
    record = Record.of("abc", Estimate(10, 20), [Charge("k1", "bucket", 5, 1, True), Charge("k2", "slots", 2, 1, True)],
                       ["requests", "requests"], 660.0, 20)
    wire = {"id": "abc", "prompt": 10, "completion": 20, "lease": 660.0, "cap": 20,
            "charges": [["k1", "bucket", "requests", 1, 5], ["k2", "slots", "requests", 1, 2]]}
    assert RESERVATION.encode(record) == wire
    assert RESERVATION.decode(wire) == record and record.slot_keys == ["k2"]
    with pytest.raises(ValueError, match="unknown counter"):
        Record.from_json({**wire, "charges": [["k", "minute", "requests", 1, 5]]})


@pytest.mark.parametrize("prefix", ["k", "a:b"])
def test_a_compact_reservation_decodes_to_the_charges_written_whole(prefix: str) -> None:
    book = rulebook(POLICY)
    now = 1_780_000_000.0
    for who in IDENTITIES:
        applied = book.applicable(prefix, who.token, who.team, who.model)
        if applied is None:
            continue
        estimate = Estimate(70, 90)
        found = charges(book, applied, estimate, 5.0, now)
        whole = Record.of("id", estimate, found, applied.units, 660.0, 90)
        compact = Record.of("id", estimate, found, applied.units, 660.0, 90, applied.layout)
        wire = orjson.loads(orjson.dumps(RESERVATION.encode(compact)))  # as the header carries it
        assert "stems" in wire and len(orjson.dumps(wire)) < len(orjson.dumps(RESERVATION.encode(whole)))
        assert RESERVATION.decode(wire) == whole == RESERVATION.decode(RESERVATION.encode(whole))
        assert [row.key for row in whole.charges] == [c.key for c in found]


def test_every_limit_kind_has_a_wire_code() -> None:
    assert sorted(WIRE_KINDS) == sorted(LimitKind) and len(set(WIRE_KINDS)) == len(WIRE_KINDS)
    wire = {"id": "abc", "prompt": 1, "completion": 2, "lease": 1.0, "cap": None, "charges": [[0, 7, 1, 5]],
            "stems": [["{k}:r:", ":*"]]}
    with pytest.raises(ValueError, match="unknown limit kind code"):
        Record.from_json(wire)


def test_a_routes_lease_is_its_own_longest_timeout(tmp_path: Path) -> None:
    first = policy(tmp_path, "    r: {requests_per_minute: 50}").models.routes["gpt-4"]
    assert route_lease(first) == max(d.timeouts.total for d in first.deployments) + LEASE_MARGIN
    assert route_lease(first) is route_lease(first)  # kept on the route of that snapshot
    (tmp_path / "p.yaml").write_text((tmp_path / "p.yaml").read_text().replace(
        "{provider: demo, model: m}", "{provider: demo, model: m, timeouts: {total: 7s}}"))
    second = load_policy(tmp_path).models.routes["gpt-4"]  # a reload: a new route, its own lease
    assert route_lease(second) == 7 + LEASE_MARGIN != route_lease(first)
