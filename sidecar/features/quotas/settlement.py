"""Settling a reservation when the exchange ends: real usage replaces the estimate.

The reservation travels in the signed decision (`extra["quota"]`), so whichever sidecar process
forwards the request settles exactly what the callout reserved, in the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sidecar.features.quotas.backend import Adjustment, Charge
from sidecar.features.quotas.estimate import Estimate, completion_tokens_from_chars
from sidecar.features.quotas.limits import LimitsPolicy

if TYPE_CHECKING:
    from sidecar.forward.exchange import Exchange

EXTRA_KEY = "quota"


@dataclass(frozen=True)
class Record:
    reservation_id: str
    estimate: Estimate
    charges: tuple[tuple[str, str, str, int, int], ...]  # key, counter, unit, amount, cap
    # The completion tokens per choice the provider is held to (sidecar.features.quotas.allowance);
    # None when the client set its own max_tokens or no token-counting limit applies.
    completion_cap: int | None = None

    def to_extra(self) -> dict[str, Any]:
        return {"id": self.reservation_id, "prompt": self.estimate.prompt_tokens,
                "completion": self.estimate.completion_tokens, "charges": [list(c) for c in self.charges],
                "cap": self.completion_cap}

    @classmethod
    def from_extra(cls, value: Any) -> Record | None:
        if not isinstance(value, dict):
            return None
        charges = tuple((str(k), str(c), str(u), int(a), int(cap)) for k, c, u, a, cap in value["charges"])
        completion_cap = value.get("cap")
        return cls(str(value["id"]), Estimate(int(value["prompt"]), int(value["completion"])), charges,
                   int(completion_cap) if completion_cap is not None else None)

    @classmethod
    def of(cls, reservation_id: str, estimate: Estimate, charges: list[Charge], units: list[str],
           completion_cap: int | None = None) -> Record:
        rows = tuple((c.key, c.counter, unit, c.amount, c.cap) for c, unit in zip(charges, units, strict=True))
        return cls(reservation_id, estimate, rows, completion_cap)


def cap_completion(body: dict[str, Any], extra: dict[str, Any]) -> None:
    """Holds the provider to the allowance the callout reserved: the body's `max_completion_tokens`
    (each provider module moves it to the field its deployment expects) when the client set none."""
    record = Record.from_extra(extra.get(EXTRA_KEY))
    if record is None or record.completion_cap is None:
        return
    if body.get("max_completion_tokens") is None and body.get("max_tokens") is None:
        body["max_completion_tokens"] = record.completion_cap


def real_usage(exchange: Exchange, estimate: Estimate, chars_per_token: float) -> tuple[int, int] | None:
    """(prompt, completion) tokens actually used; None keeps the reservation as it was."""
    if exchange.usage is not None:
        return exchange.usage.prompt_tokens, exchange.usage.completion_tokens
    relayed = completion_tokens_from_chars(exchange.completion_chars, chars_per_token)
    if exchange.status == 200:
        # No usage from the provider (a stream cut short before its usage chunk, or a provider
        # that never reports it): the prompt was read and the relayed text was generated.
        return estimate.prompt_tokens, relayed
    if exchange.completion_chars == 0:
        return 0, 0  # the provider refused or failed before answering: nothing was generated
    return None


def adjustments(record: Record, exchange: Exchange, limits: LimitsPolicy) -> list[Adjustment]:
    used = real_usage(exchange, record.estimate, limits.chars_per_token)
    price = limits.price(exchange.decision.model_key)
    result = []
    for key, counter, unit, amount, cap in record.charges:
        if counter == "slots":
            result.append(Adjustment(key, "slots"))
            continue
        if used is None or unit == "requests":
            continue
        real = sum(used) if unit == "tokens" else (price.micro_usd(*used) if price else 0)
        if real != amount:
            result.append(Adjustment(key, counter, real - amount, cap))
    return result
