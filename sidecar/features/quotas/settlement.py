"""Settling a reservation when the exchange ends: real usage replaces the estimate.

The reservation travels in the signed decision (typed key `RESERVATION`), so whichever sidecar
process forwards the request settles exactly what the callout reserved, in the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sidecar.callout.handoff import Decision, DecisionKey
from sidecar.core.limits import (
    COUNTER_NAMES,
    KINDS,
    UNIT_NAMES,
    WIRE_KINDS,
    Counter,
    LimitsPolicy,
    Unit,
    counter_named,
    unit_named,
)
from sidecar.features.quotas.applicable import Layout
from sidecar.features.quotas.backend import Adjustment, Charge
from sidecar.features.quotas.estimate import Estimate, completion_tokens_from_chars

if TYPE_CHECKING:
    from sidecar.forward.exchange import Exchange



class ChargeRow(NamedTuple):
    """One reserved charge as the forwarding path settles it (NamedTuples: immutable, and cheap to
    build on every callout and to decode on every forward)."""

    key: str
    counter: Counter
    unit: Unit
    amount: int
    cap: int


class Record(NamedTuple):
    """A reservation: its id, the estimate charged, its charges, and the slots' full lease
    (seconds) that the forwarding path's claim gives them."""

    reservation_id: str
    estimate: Estimate
    charges: tuple[ChargeRow, ...]
    lease: float = 0.0
    # The completion tokens per choice the provider is held to (sidecar.features.quotas.allowance);
    # None when the client set its own max_tokens or no token-counting limit applies.
    completion_cap: int | None = None
    # How to_json writes the keys compactly (applicable.Layout: one per rule, in charge order);
    # None writes them whole. A decoded record has none: the forwarding path never encodes one.
    layout: Layout | None = None

    def to_json(self) -> dict[str, Any]:
        wire = {"id": self.reservation_id, "prompt": self.estimate.prompt_tokens,
                "completion": self.estimate.completion_tokens, "lease": self.lease, "cap": self.completion_cap}
        layout = self.layout
        if layout is None:
            wire["charges"] = list(map(list, self.charges))  # [key, counter, unit, amount, cap]
            return wire
        # [stem, kind code, amount, cap] (+ window id): the key is rebuilt from the stem and the kind.
        wire["charges"] = [[stem, kind, row.amount, row.cap, row.key[cut:]] if cut
                           else [stem, kind, row.amount, row.cap]
                           for (stem, kind, cut), row in zip(layout.rows, self.charges, strict=True)]
        wire["stems"] = layout.stems
        return wire

    @classmethod
    def from_json(cls, value: Any) -> Record:
        rows = value["charges"]
        new = tuple.__new__  # NamedTuples built without their Python-level __new__: all fields given
        if "stems" in value:
            charges = _compact_rows(rows, value["stems"])
        else:
            try:  # plain lookups first, the named errors only for a bad row
                charges = tuple([new(ChargeRow, (str(k), COUNTER_NAMES[c], UNIT_NAMES[u], int(a), int(cap)))
                                 for k, c, u, a, cap in rows])
            except (KeyError, TypeError):
                charges = tuple([ChargeRow(str(k), counter_named(str(c)), unit_named(str(u)), int(a), int(cap))
                                 for k, c, u, a, cap in rows])
        cap = value.get("cap")
        return new(cls, (str(value["id"]), new(Estimate, (int(value["prompt"]), int(value["completion"]))), charges,
                         float(value["lease"]), int(cap) if cap is not None else None, None))

    @classmethod
    def of(cls, reservation_id: str, estimate: Estimate, charges: Sequence[Charge], units: Sequence[Unit],
           lease: float, completion_cap: int | None = None, layout: Layout | None = None) -> Record:
        new = tuple.__new__  # as in from_json
        rows = tuple([new(ChargeRow, (c.key, c.counter, unit, c.amount, c.cap))
                      for c, unit in zip(charges, units, strict=True)])
        return new(cls, (reservation_id, estimate, rows, lease, completion_cap, layout))

    @property
    def slot_keys(self) -> list[str]:
        return [c.key for c in self.charges if c.counter == "slots"]


def _compact_rows(rows: Any, stems: Any) -> tuple[ChargeRow, ...]:
    """The charges of a record written with a Layout; ValueError for an unknown kind code."""
    out = []
    new = tuple.__new__  # as in Record.from_json
    for row in rows:
        head, tail = stems[row[0]]
        code = row[1]
        if not 0 <= code < len(_WIRE_SPECS):
            raise ValueError(f"unknown limit kind code {code!r}")
        kind, counter, unit = _WIRE_SPECS[code]
        key = head + kind + tail if len(row) == 4 else f"{head}{kind}{tail}:{row[4]}"
        out.append(new(ChargeRow, (key, counter, unit, int(row[2]), int(row[3]))))
    return tuple(out)


# Per kind code: the kind's name (in the key), counter and unit; looked up once per decoded charge.
_WIRE_SPECS: tuple[tuple[str, Counter, Unit], ...] = tuple(
    (kind.value, KINDS[kind].counter, KINDS[kind].unit) for kind in WIRE_KINDS)


RESERVATION: DecisionKey[Record] = DecisionKey("quota", Record.to_json, Record.from_json)
"""The quota stage's annotation: what the callout reserved, for the forwarding path to settle."""


def cap_completion(body: dict[str, Any], decision: Decision) -> None:
    """Holds the provider to the allowance the callout reserved: the body's `max_completion_tokens`
    (each provider module moves it to the field its deployment expects) when the client set none."""
    record = decision.get(RESERVATION)
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
    for row in record.charges:
        if row.counter == "slots":
            result.append(Adjustment(row.key, "slots"))
            continue
        if used is None or row.unit == "requests":
            continue
        real = used[0] + used[1] if row.unit == "tokens" else (price.micro_usd(*used) if price else 0)
        if real != row.amount:
            # tuple.__new__: without Adjustment's Python-level __new__ (all fields given).
            result.append(tuple.__new__(Adjustment, (row.key, row.counter, real - row.amount, row.cap, 60.0)))
    return result


def refund(record: Record) -> list[Adjustment]:
    """Nothing reached the provider (a later callout stage denied, or the forwarding path refused
    the decision): release the slots and give back every charge, as if never reserved."""
    result = []
    for row in record.charges:
        if row.counter == "slots":
            result.append(Adjustment(row.key, "slots"))
        elif row.amount:
            result.append(Adjustment(row.key, row.counter, -row.amount, row.cap))
    return result
