"""Per policy snapshot: what the limits that apply to one (token, team, model) need per request.

Every callout of one identity under one policy finds the same limits, counter keys, metric
scopes and rate-limit header candidates; only the estimate, the window and the levels change.
A `Rulebook` computes them once per identity, lazily, and hangs off the immutable
`LimitsPolicy` it was built from (`rulebook(policy)`): a reload brings a new `LimitsPolicy`,
hence an empty rulebook, so nothing computed for an older snapshot can be served after it.
Its size is bounded by the policy: tokens, teams and model keys are the policy's own names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sidecar.core.limits import (
    WIRE_CODES,
    Counter,
    Identity,
    Limit,
    LimitsPolicy,
    Period,
    Price,
    Unit,
)
from sidecar.features.quotas.admission import MINUTE
from sidecar.features.quotas.backend import Charge
from sidecar.features.quotas.windows import Window, current_window

COUNTED_UNITS: tuple[Unit, ...] = ("tokens", "spend")
"""Units a completion allowance counts in: a request's max_tokens moves them."""


@dataclass(frozen=True)
class Rule:
    """One applicable limit as one identity counts in it."""

    limit: Limit
    name: str  # Limit.name: `rule.kind`
    key: str  # the counter key; a calendar quota's window id is appended per request
    counter: Counter
    unit: Unit
    period: Period | None
    cap: int
    enforced: bool
    scope: str  # e.g. `token=demo` (Limit.scope): the gauge's label
    # A request bucket charges every request the same (1 request, same key and cap): built once.
    fixed: Charge | None = None


@dataclass(frozen=True)
class Applicable:
    """Every limit that applies to `who`, in policy order, with what admission reuses per request."""

    who: Identity
    limits: tuple[Limit, ...]  # shared by every request of this identity: immutable
    rules: tuple[Rule, ...]
    units: tuple[Unit, ...]  # per rule: what the reservation record settles by
    price: Price | None  # the model's price (spend limits)
    # An enforced limit counts tokens or spend: the gateway caps a request that sets no max_tokens.
    counts_tokens: bool
    # The allowance may have to shrink to fit an empty limit (allowance.fitted) only if an enforced
    # spend limit applies or an estimate exceeds this: the least cap of the enforced token limits.
    counts_spend: bool
    least_token_cap: float
    spends: bool  # some limit (enforced or shadow) counts spend: a charge needs the request's price
    # Indexes of the enforced request / token limits that x-ratelimit-* headers choose from.
    request_headers: tuple[int, ...]
    token_headers: tuple[int, ...]
    header_names: frozenset[str]  # lower case: the headers every admitted request carries
    windows: tuple[int, ...]  # indexes of calendar quotas: their levels are exported as gauges
    shadows: tuple[int, ...]  # indexes of shadow limits: counted, never enforced, logged when exceeded
    layout: Layout  # how the reservation record writes these rules' counter keys compactly


class Layout(NamedTuple):
    """The counter keys of some rules, as a reservation writes them: a key is `head + kind + tail`
    (+ `:window id`); the distinct (head, tail) pairs travel once per record, each charge names
    its pair and its kind's code (limits.WIRE_KINDS), so the signed decision header stays small."""

    stems: list[list[str]]  # [head, tail] pairs, JSON-ready: shared by every record, never changed
    rows: tuple[tuple[int, int, int], ...]  # per rule: (stem index, kind code, window id's offset in the key or 0)


_IdentityKey = tuple[str, str, str | None, str]


class Rulebook:
    """The precomputed limits of one `LimitsPolicy`; build it with `rulebook(policy)`."""

    def __init__(self, policy: LimitsPolicy) -> None:
        self.policy = policy
        self.zone = ZoneInfo(policy.timezone)
        self._applicable: dict[_IdentityKey, Applicable | None] = {}
        # Per period, the last window found and the instant it was found at: it is the window of
        # every instant from then until its end (local dates only move forwards with time).
        self._windows: dict[Period, tuple[float, Window]] = {}

    def applicable(self, key_prefix: str, token: str, team: str | None, model: str) -> Applicable | None:
        """The limits for this identity with counter keys under `key_prefix`; None when none applies."""
        key = (key_prefix, token, team, model)
        try:
            return self._applicable[key]
        except KeyError:
            found = self._applicable[key] = _build(self.policy, key_prefix, Identity(token, team, model))
            return found

    def window(self, period: Period, now: float) -> Window:
        """`current_window(period, zone, now)`, recomputed only when `now` leaves the interval
        [first instant it was found at, its end): two comparisons instead of a local date."""
        cached = self._windows.get(period)
        if cached is not None and cached[0] <= now < cached[1].end:
            return cached[1]
        window = current_window(period, self.zone, now)
        self._windows[period] = (now, window)
        return window


def rulebook(policy: LimitsPolicy) -> Rulebook:
    """The policy's rulebook, built on first use and kept on the (immutable) policy object itself."""
    # Not a field: equality, repr and the schema ignore it (the same device as Decision.get).
    found = policy.__dict__.get("_rulebook")
    if found is None:
        found = policy.__dict__["_rulebook"] = Rulebook(policy)
    assert isinstance(found, Rulebook)
    return found


def _build(policy: LimitsPolicy, key_prefix: str, who: Identity) -> Applicable | None:
    limits = policy.applicable(who)
    if not limits:
        return None
    rules = tuple(_rule(limit, who, key_prefix) for limit in limits)
    requests = _header_candidates(rules, "requests")
    tokens = _header_candidates(rules, "tokens")
    names = {f"x-ratelimit-{part}-{unit}" for unit, found in (("requests", requests), ("tokens", tokens)) if found
             for part in ("limit", "remaining", "reset")}
    return Applicable(
        who, tuple(limits), rules, tuple(r.unit for r in rules), policy.price(who.model),
        counts_tokens=any(r.enforced and r.unit in COUNTED_UNITS for r in rules),
        counts_spend=any(r.enforced and r.unit == "spend" and r.counter != "slots" for r in rules),
        least_token_cap=min((r.cap for r in rules if r.enforced and r.unit == "tokens" and r.counter != "slots"),
                            default=math.inf),
        spends=any(r.unit == "spend" for r in rules),
        request_headers=requests, token_headers=tokens, header_names=frozenset(names),
        windows=tuple(i for i, r in enumerate(rules) if r.counter == "window"),
        shadows=tuple(i for i, r in enumerate(rules) if not r.enforced),
        layout=_layout(rules, key_prefix))


def _layout(rules: tuple[Rule, ...], key_prefix: str) -> Layout:
    stems: dict[tuple[str, str], int] = {}
    rows = []
    for rule in rules:
        stem = (f"{{{key_prefix}}}:{rule.limit.rule}:", f":{rule.scope}")
        index = stems.setdefault(stem, len(stems))
        rows.append((index, WIRE_CODES[rule.limit.kind], len(rule.key) + 1 if rule.counter == "window" else 0))
    return Layout([list(stem) for stem in stems], tuple(rows))


def _rule(limit: Limit, who: Identity, key_prefix: str) -> Rule:
    spec = limit.spec
    scope = limit.scope(who)
    # One hash tag for every key: multi-key scripts need one slot on Redis Cluster.
    key = f"{{{key_prefix}}}:{limit.rule}:{limit.kind}:{scope}"
    fixed = (Charge(key, "bucket", limit.cap, 1, not limit.shadow, MINUTE)
             if spec.counter == "bucket" and spec.unit == "requests" else None)
    return Rule(limit, limit.name, key, spec.counter, spec.unit, spec.period, limit.cap, not limit.shadow, scope,
                fixed)


def _header_candidates(rules: tuple[Rule, ...], unit: Unit) -> tuple[int, ...]:
    return tuple(i for i, r in enumerate(rules) if r.enforced and r.unit == unit and r.counter != "slots")
