"""The `limits:` policy as domain objects: which limits apply to a request, and how they count.

A rule names one or more limit kinds; each (rule, kind) pair is one `Limit`. A limit counts
separately per the identities in `per` (token, team, model), so "60 requests per minute per
token" and "1M tokens per month for the whole team" are the same object with different fields.

The `limits:` schema (sidecar/policy/limits_schema.py) builds them into each policy snapshot and
the quotas feature (sidecar/features/quotas/) counts them; plain values (stdlib only), so they sit
in core with the tokens and routes the snapshot also holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Literal

MICRO_USD = 1_000_000  # spend is counted in integer micro-dollars, so every backend adds integers

Unit = Literal["requests", "tokens", "spend"]
"""What a limit counts: requests (or slots), tokens (prompt + completion), spend (micro-USD)."""
Counter = Literal["bucket", "window", "slots"]
"""How it counts: a leaky bucket (refills continuously), a calendar window, or slots in flight."""
Period = Literal["minute", "day", "month"]
"""The period a limit is stated per (buckets drain per minute; windows are calendar days/months)."""
PerField = Literal["token", "team", "model"]
"""An identity a limit counts separately per (`per:` in the policy)."""
StoreBackend = Literal["memory", "redis"]

COUNTERS: tuple[Counter, ...] = ("bucket", "window", "slots")
UNITS: tuple[Unit, ...] = ("requests", "tokens", "spend")
PER_FIELDS: tuple[PerField, ...] = ("token", "team", "model")
STORE_BACKENDS: tuple[StoreBackend, ...] = ("memory", "redis")


def counter_named(name: str) -> Counter:
    """`name` as a Counter (decoding a reservation); ValueError for anything else."""
    found = COUNTER_NAMES.get(name)
    if found is None:
        raise ValueError(f"unknown counter {name!r}")
    return found


def unit_named(name: str) -> Unit:
    """`name` as a Unit (decoding a reservation); ValueError for anything else."""
    found = UNIT_NAMES.get(name)
    if found is None:
        raise ValueError(f"unknown unit {name!r}")
    return found


# Lookups, not loops: every forwarded request decodes one counter and one unit per charge.
COUNTER_NAMES: Mapping[str, Counter] = MappingProxyType({name: name for name in COUNTERS})
UNIT_NAMES: Mapping[str, Unit] = MappingProxyType({name: name for name in UNITS})


class LimitKind(StrEnum):
    """A limit's key in a `limits.rules` entry; also the error `code` of a denial it causes."""

    REQUESTS_PER_MINUTE = "requests_per_minute"
    TOKENS_PER_MINUTE = "tokens_per_minute"
    CONCURRENT_REQUESTS = "concurrent_requests"
    TOKENS_PER_DAY = "tokens_per_day"
    TOKENS_PER_MONTH = "tokens_per_month"
    SPEND_PER_DAY = "spend_per_day"
    SPEND_PER_MONTH = "spend_per_month"


@dataclass(frozen=True)
class KindSpec:
    """How one limit kind counts, and how its denial reads."""

    unit: Unit
    counter: Counter
    period: Period | None  # None: slots (no period)
    quota: bool  # True: insufficient_quota when exhausted; False: rate_limit_exceeded
    label: str


KINDS: Mapping[LimitKind, KindSpec] = {
    LimitKind.REQUESTS_PER_MINUTE: KindSpec("requests", "bucket", "minute", False, "requests per minute"),
    LimitKind.TOKENS_PER_MINUTE: KindSpec("tokens", "bucket", "minute", False, "tokens per minute"),
    LimitKind.CONCURRENT_REQUESTS: KindSpec("requests", "slots", None, False, "concurrent requests"),
    LimitKind.TOKENS_PER_DAY: KindSpec("tokens", "window", "day", True, "tokens per day"),
    LimitKind.TOKENS_PER_MONTH: KindSpec("tokens", "window", "month", True, "tokens per month"),
    LimitKind.SPEND_PER_DAY: KindSpec("spend", "window", "day", True, "spend per day (USD)"),
    LimitKind.SPEND_PER_MONTH: KindSpec("spend", "window", "month", True, "spend per month (USD)"),
}


WIRE_KINDS: tuple[LimitKind, ...] = (
    LimitKind.REQUESTS_PER_MINUTE, LimitKind.TOKENS_PER_MINUTE, LimitKind.CONCURRENT_REQUESTS,
    LimitKind.TOKENS_PER_DAY, LimitKind.TOKENS_PER_MONTH, LimitKind.SPEND_PER_DAY, LimitKind.SPEND_PER_MONTH)
"""A kind's code in a reservation (its index here): decisions carry codes, so only append to it."""
WIRE_CODES: Mapping[LimitKind, int] = MappingProxyType({kind: code for code, kind in enumerate(WIRE_KINDS)})


@dataclass(frozen=True)
class Identity:
    """Who is asking for what: the values a limit matches and partitions on."""

    token: str
    team: str | None
    model: str

    def value(self, name: PerField) -> str | None:
        """This identity's `token`, `team` (None when the token has none) or `model`."""
        return {"token": self.token, "team": self.team, "model": self.model}[name]


@dataclass(frozen=True)
class Limit:
    """One (rule, kind) pair of the policy; `cap` is in the kind's unit (micro-USD for spend)."""

    rule: str
    kind: LimitKind
    cap: int  # requests, tokens, or micro-USD for spend
    per: tuple[PerField, ...] = ("token",)
    tokens: frozenset[str] | None = None  # None: any
    teams: frozenset[str] | None = None
    models: frozenset[str] | None = None
    shadow: bool = False
    fail_open: bool = True

    @property
    def spec(self) -> KindSpec:
        """How this limit's kind counts (unit, counter, period) and how its denial reads."""
        return KINDS[self.kind]

    @property
    def name(self) -> str:
        """`rule.kind`, e.g. `team-budget.spend_per_day`: what metrics, logs and headers name."""
        return f"{self.rule}.{self.kind}"

    def matches(self, who: Identity) -> bool:
        """Whether this limit applies to `who`: every filter set matches, and every `per` identity is known."""
        return ((self.tokens is None or who.token in self.tokens)
                and (self.teams is None or (who.team is not None and who.team in self.teams))
                and (self.models is None or who.model in self.models)
                and all(who.value(name) is not None for name in self.per))

    def scope(self, who: Identity) -> str:
        """The partition this request counts in, e.g. `token=demo,model=gpt-4` (or `*`: shared)."""
        return ",".join(f"{name}={who.value(name)}" for name in self.per) or "*"

    def describe_scope(self, who: Identity) -> str:
        """The partition in words for a denial's message, e.g. `for token 'demo' and model 'gpt-4'`."""
        parts = [f"{name} '{who.value(name)}'" for name in self.per]
        return "for " + " and ".join(parts) if parts else "shared by all matching requests"


@dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    prompt: float = 0.0
    completion: float = 0.0

    def micro_usd(self, prompt_tokens: int, completion_tokens: int) -> int:
        """What the tokens cost, in integer micro-USD (rounded)."""
        # USD per 1M tokens equals micro-USD per token.
        return round(prompt_tokens * self.prompt + completion_tokens * self.completion)


@dataclass(frozen=True)
class ModelQuotaSettings:
    """One model's entry under `limits.models`: its completion reservation and its price."""

    completion_tokens: int | None = None  # reserved when the request sets no max_tokens
    price: Price | None = None


@dataclass(frozen=True)
class StoreConfig:
    """`limits.store`: where counters live (this process's memory, or Redis shared by replicas)."""

    backend: StoreBackend = "memory"
    state_dir: Path | None = None  # memory: None means $GATEWAY_STATE_DIR or ./.gateway-state
    flush_interval: float = 1.0
    redis_url: str | None = None
    key_prefix: str = "cgt"
    timeout: float = 0.25  # per Redis call; an outage must not hold requests for long


@dataclass(frozen=True)
class LimitsPolicy:
    """The whole `limits:` section of one policy snapshot (empty: nothing is limited)."""

    limits: tuple[Limit, ...] = ()
    timezone: str = "UTC"
    store: StoreConfig = field(default_factory=StoreConfig)
    chars_per_token: float = 4.0
    completion_tokens: int = 1024
    models: Mapping[str, ModelQuotaSettings] = field(default_factory=dict)

    def applicable(self, who: Identity) -> list[Limit]:
        """The limits that apply to `who`, in policy order."""
        return [limit for limit in self.limits if limit.matches(who)]

    def price(self, model: str) -> Price | None:
        """The model's price, or None when the policy gives it none (its spend is not counted)."""
        settings = self.models.get(model)
        return settings.price if settings else None

    def default_completion_tokens(self, model: str) -> int:
        """Completion tokens reserved for a request that sets no `max_tokens`: the model's, else the section's."""
        settings = self.models.get(model)
        if settings is not None and settings.completion_tokens is not None:
            return settings.completion_tokens
        return self.completion_tokens
