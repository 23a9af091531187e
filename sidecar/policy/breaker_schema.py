"""`breaker:` blocks: the top-level default, and per provider (keys not given come from the default)."""

from __future__ import annotations

from dataclasses import replace

from sidecar.core.kinds import FAILURE_KINDS, Outcome
from sidecar.core.routes import BreakerConfig
from sidecar.policy.reader import Located


def parse_breaker(where: Located, base: BreakerConfig) -> BreakerConfig:
    """A `breaker:` block over `base` (keys not given keep base's values); errors go to the section's log."""
    fields = where.mapping()
    if fields is None:
        return base
    config = replace(
        base,
        enabled=fields.read("enabled", Located.as_bool, base.enabled),
        consecutive_failures=fields.read("consecutive_failures", lambda w: w.as_int(minimum=1),
                                         base.consecutive_failures),
        window=fields.read("window", _positive_duration, base.window),
        min_requests=fields.read("min_requests", lambda w: w.as_int(minimum=1), base.min_requests),
        cooldown=fields.read("cooldown", _positive_duration, base.cooldown),
        half_open_probes=fields.read("half_open_probes", lambda w: w.as_int(minimum=1), base.half_open_probes),
    )
    rate_at = fields.get("error_rate")
    if rate_at is not None:
        # `error_rate: null` switches an inherited rate rule off.
        rate = None if rate_at.scalar() is None else rate_at.as_number(minimum=0.01, maximum=1.0)
        config = replace(config, error_rate=rate)
    failure_at = fields.get("failure_on")
    if failure_at is not None:
        config = replace(config, failure_on=_failure_kinds(failure_at, base.failure_on))
    fields.finish()
    return config


def _positive_duration(where: Located) -> float | None:
    value = where.as_duration()
    if value is not None and value <= 0:
        where.error("must be longer than zero")
        return None
    return value


def _failure_kinds(where: Located, default: frozenset[Outcome]) -> frozenset[Outcome]:
    kinds: set[Outcome] = set()
    for item in where.items():
        kind = item.scalar()
        # YAML reads a bare 429 as an integer; both spellings mean the same.
        kind = str(kind) if isinstance(kind, int) and not isinstance(kind, bool) else kind
        if kind not in FAILURE_KINDS:
            item.error(f"must be one of {', '.join(FAILURE_KINDS)}")
            return default
        kinds.add(Outcome(str(kind)))
    return frozenset(kinds)
