"""OpenAI-style rate-limit headers, on allowed responses and on denials.

`x-ratelimit-{limit,remaining,reset}-requests` describe the tightest enforced request limit
(requests per minute), the `-tokens` trio the tightest enforced token limit (per minute, day or
month), "tightest" meaning the least remaining. Resets use OpenAI's duration format (`1s`,
`6m0s`, `20ms`): for a per-minute limit the time until it has fully refilled, for a calendar
quota the time until its window ends. `Retry-After` is whole seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.core.limits import Limit
from sidecar.features.quotas.backend import Charge

SHADOW_HEADER = "x-gateway-quota-shadow"
DEGRADED_HEADER = "x-gateway-quota-degraded"


@dataclass(frozen=True)
class Level:
    """One applicable limit as the store reported it."""

    limit: Limit
    charge: Charge
    used: float
    now: float
    # Slots: the earliest lease end of the slots held (epoch seconds; 0 if unknown).
    frees_at: float = 0.0

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.charge.cap - self.used))

    def reset_seconds(self) -> float:
        if self.charge.counter == "bucket":
            return max(0.0, self.used) * self.charge.period / self.charge.cap
        if self.charge.counter == "window":
            return max(0.0, self.charge.window_end - self.now)
        return 0.0

    def retry_after_seconds(self) -> float:
        """How long until this request would fit (when it was denied)."""
        charge = self.charge
        if charge.counter == "bucket":
            return max(0.0, self.used + charge.amount - charge.cap) * charge.period / charge.cap
        if charge.counter == "window":
            return max(0.0, charge.window_end - self.now)
        # A slot frees when a request in flight ends (unknowable) or, at the latest, when the
        # earliest lease runs out: seconds for a request whose client left before its forward,
        # the deployment's `total` timeout + 60 s for one being served. The latest is the truth.
        return max(0.0, self.frees_at - self.now) if self.frees_at else 1.0

    def fits(self) -> bool:
        return self.used + self.charge.amount <= self.charge.cap


def rate_limit_headers(levels: Sequence[Level]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for unit in ("requests", "tokens"):
        candidates = [lv for lv in levels if lv.charge.enforced and lv.limit.spec.unit == unit
                      and lv.charge.counter != "slots"]
        if not candidates:
            continue
        tightest = min(candidates, key=lambda lv: (lv.remaining, -lv.reset_seconds()))
        headers[f"x-ratelimit-limit-{unit}"] = str(tightest.charge.cap)
        headers[f"x-ratelimit-remaining-{unit}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{unit}"] = openai_duration(tightest.reset_seconds())
    return headers


def admitted_headers(request_limits: Sequence[int], token_limits: Sequence[int], charges: Sequence[Charge],
                     used: Sequence[float], now: float) -> dict[str, str]:
    """`rate_limit_headers` of the levels (charges[i], used[i], now), without building them: the
    candidates (enforced request / token limits, no slots) are the indexes the rulebook chose."""
    headers: dict[str, str] = {}
    # One function, no helpers: it runs on every admitted request.
    for names, indexes in ((_REQUEST_HEADERS, request_limits), (_TOKEN_HEADERS, token_limits)):
        chosen: Charge | None = None
        least, latest = 0, 0.0
        for index in indexes:
            charge, level = charges[index], used[index]
            # As Level.remaining and Level.reset_seconds (a bucket or a window: never slots).
            remaining = max(0, math.floor(charge.cap - level))
            if charge.counter == "bucket":
                reset = max(0.0, level) * charge.period / charge.cap
            else:
                reset = max(0.0, charge.window_end - now)
            # min() by (remaining, -reset): the least remaining, then the latest reset, the first of equals.
            if chosen is None or remaining < least or (remaining == least and reset > latest):
                chosen, least, latest = charge, remaining, reset
        if chosen is None:
            continue
        headers[names[0]] = str(chosen.cap)
        headers[names[1]] = str(least)
        # openai_duration's first case inline: a per-minute limit far from full resets within a second.
        headers[names[2]] = f"{math.ceil(latest * 1000)}ms" if latest < 1 else openai_duration(latest)
    return headers


_REQUEST_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
_TOKEN_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def openai_duration(seconds: float) -> str:
    """`20ms`, `1.5s`, `6m0s`, `2h3m4s`: the format OpenAI uses in its reset headers."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    whole = math.ceil(seconds * 1000) / 1000
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text
