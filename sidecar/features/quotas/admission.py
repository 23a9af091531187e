"""Turning applicable limits into charges, and the store's answer into a decision.

Every applicable limit becomes one charge on one counter key. Tokens are charged the whole
estimate (prompt + completion allowance), spend its price, requests and slots one each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sidecar.core.errors import QuotaExhausted, RateLimited
from sidecar.core.limits import MICRO_USD, Identity, Limit, Price, Unit
from sidecar.features.quotas.backend import Charge
from sidecar.features.quotas.estimate import Estimate
from sidecar.features.quotas.headers import Level, rate_limit_headers, retry_after
from sidecar.features.quotas.windows import current_window

MINUTE = 60.0


def plan_charges(limits: Sequence[Limit], who: Identity, estimate: Estimate, price: Price | None,
                 zone: ZoneInfo, key_prefix: str, lease: float, now: float) -> list[Charge]:
    return [_charge(limit, who, estimate, price, zone, key_prefix, lease, now) for limit in limits]


def _charge(limit: Limit, who: Identity, estimate: Estimate, price: Price | None, zone: ZoneInfo,
            key_prefix: str, lease: float, now: float) -> Charge:
    spec = limit.spec
    # One hash tag for every key: multi-key scripts need one slot on Redis Cluster.
    key = f"{{{key_prefix}}}:{limit.rule}:{limit.kind}:{limit.scope(who)}"
    enforced = not limit.shadow
    charged = amount(spec.unit, estimate, price)
    if spec.counter == "bucket":
        return Charge(key, "bucket", limit.cap, charged, enforced, period=MINUTE)
    if spec.counter == "slots":
        return Charge(key, "slots", limit.cap, 1, enforced, lease=lease)
    assert spec.period is not None
    window = current_window(spec.period, zone, now)
    return Charge(f"{key}:{window.id}", "window", limit.cap, charged, enforced, window_end=window.end)


def amount(unit: Unit, estimate: Estimate, price: Price | None) -> int:
    """What one request charges a limit counting `unit`: tokens, micro-USD, or 1 request."""
    if unit == "tokens":
        return estimate.total
    if unit == "spend":
        # At least one micro-dollar, so an exhausted budget denies even an unpriced request.
        return max(1, price.micro_usd(estimate.prompt_tokens, estimate.completion_tokens) if price else 0)
    return 1


def denial(levels: Sequence[Level], who: Identity, zone: ZoneInfo) -> RateLimited:
    """The error for a request the store refused: the limit that keeps it out longest."""
    failing = [lv for lv in levels if lv.charge.enforced and not lv.fits()]
    worst = max(failing, key=lambda lv: lv.retry_after_seconds())
    return limit_error(worst, who, zone, levels)


def limit_error(level: Level, who: Identity, zone: ZoneInfo, levels: Sequence[Level],
                too_large: bool = False) -> RateLimited:
    limit, charge = level.limit, level.charge
    spec = limit.spec
    head = "Quota exceeded" if spec.quota else "Rate limit reached"
    # A request larger than the limit is refused before the store is asked: what is used is not known.
    used = "" if too_large else f"used {_show(spec.unit, level.used)}, "
    message = (f"{head}: {spec.label} {limit.describe_scope(who)} (limit '{limit.rule}'): "
               f"limit {_show(spec.unit, charge.cap)}, {used}requested {_show(spec.unit, charge.amount)}.")
    headers = rate_limit_headers(levels)
    if too_large:
        message += " The request is larger than the limit itself; reduce max_tokens or the prompt."
        # No Retry-After (waiting would not help), and the OpenAI SDKs' own word for "do not retry":
        # without it they retry a 429 twice, each time to the same answer.
        headers["x-should-retry"] = "false"
    else:
        wait = level.retry_after_seconds()
        headers["Retry-After"] = retry_after(wait)
        if charge.counter == "window":
            message += f" It resets at {datetime.fromtimestamp(charge.window_end, zone).isoformat()}."
        elif charge.counter == "slots":
            message += f" A slot frees when a request in flight ends, at the latest in {retry_after(wait)}s."
        else:
            message += f" Retry after {retry_after(wait)}s."
    error_class = QuotaExhausted if spec.quota else RateLimited
    return error_class(message, code=limit.kind, headers=headers)


def _show(unit: Unit, value: float) -> str:
    if unit == "spend":
        return f"${value / MICRO_USD:.6f}".rstrip("0").rstrip(".")
    return str(math.ceil(value) if value > 0 else 0)
