"""The completion allowance of a request that sets no `max_tokens`, and the cap the provider gets.

A token-counting limit (tokens or spend) reserves prompt + completion allowance. When the client
set no `max_completion_tokens`/`max_tokens`, the allowance is the gateway's default, and nothing but
the gateway can hold the provider to it: so the forwarding path sends it as the request's cap
(`max_completion_tokens`, or the field the deployment knows; Anthropic's required `max_tokens`).
A budget with room for less than the allowance reserves what is left and caps the provider there.
A client's own `max_tokens` is never changed: it is reserved as given, or denied when it cannot fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.core.chat import ChatRequest
from sidecar.core.limits import Price
from sidecar.features.quotas.applicable import COUNTED_UNITS, Rule
from sidecar.features.quotas.estimate import Estimate

__all__ = ["COUNTED_UNITS", "Allowance", "choices", "fitted"]


@dataclass(frozen=True)
class Allowance:
    """A capped request's estimate and the cap per choice (the provider's max tokens)."""

    estimate: Estimate
    cap: int


def choices(request: ChatRequest) -> int:
    """How many choices (`n`) the request asks for; each may use the whole per-choice cap."""
    n = request.body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def fitted(estimate: Estimate, n: int, rules: Sequence[Rule], used: Sequence[float],
           price: Price | None) -> Allowance | None:
    """The largest allowance up to `estimate`'s that every enforced token and spend limit (of
    `rules`, the applicable limits) has room for at the levels `used`; None when not even one
    token per choice fits."""
    room = estimate.completion_tokens
    for rule, level in zip(rules, used, strict=True):
        if not rule.enforced or rule.unit not in COUNTED_UNITS or rule.counter == "slots":
            continue
        free = rule.cap - level
        if rule.unit == "tokens":
            room = min(room, math.floor(free - estimate.prompt_tokens))
        else:
            room = min(room, _spend_room(free, estimate.prompt_tokens, price, room))
    per_choice = room // n
    if per_choice < 1:
        return None
    return Allowance(Estimate(estimate.prompt_tokens, per_choice * n), per_choice)


def _spend_room(free: float, prompt_tokens: int, price: Price | None, upper: int) -> int:
    """Completion tokens a spend budget with `free` micro-USD left can pay for."""
    if price is None or price.completion <= 0:
        # The completion costs nothing: the (minimum one micro-dollar) charge fits or it does not.
        return upper if max(1, price.micro_usd(prompt_tokens, 0) if price else 0) <= free else 0
    return math.floor((free - prompt_tokens * price.prompt) / price.completion)
