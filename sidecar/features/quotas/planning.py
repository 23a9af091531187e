"""What one callout would charge: the plan admission reserves, built from the policy's rulebook.

The per-identity work (which limits apply, their keys and scopes) is the rulebook's, done once
per policy snapshot (sidecar.features.quotas.applicable); a plan adds the request's estimate,
its completion cap, the current calendar windows and the leases.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sidecar.callout.pipeline import Check
from sidecar.core.chat import ChatRequest
from sidecar.core.limits import Identity, Limit, Price
from sidecar.core.routes import ModelRoute
from sidecar.features.quotas.admission import MINUTE, amount, limit_error
from sidecar.features.quotas.allowance import choices, fitted
from sidecar.features.quotas.applicable import Applicable, Rulebook, rulebook
from sidecar.features.quotas.backend import Charge
from sidecar.features.quotas.estimate import Estimate, estimate_for, estimate_request
from sidecar.features.quotas.headers import Level

LEASE_MARGIN = 60.0


class Plan(NamedTuple):
    """The charges of one request (one per applicable limit, in `applied.rules` order); a
    NamedTuple, immutable and cheap to build (a callout may plan twice)."""

    book: Rulebook
    applied: Applicable
    charges: list[Charge]
    estimate: Estimate
    lease: float  # seconds a confirmed slot is held if its release never comes
    hold: float  # seconds an unclaimed slot is held: min(arrival lease, lease)
    now: float
    cap: int | None = None  # the provider's completion cap per choice (sidecar.features.quotas.allowance)
    choices: int = 1

    @property
    def who(self) -> Identity:
        return self.applied.who

    @property
    def limits(self) -> tuple[Limit, ...]:
        return self.applied.limits

    @property
    def zone(self) -> ZoneInfo:
        return self.book.zone

    @property
    def price(self) -> Price | None:
        return self.applied.price

    def with_estimate(self, estimate: Estimate, cap: int | None) -> Plan:
        # Built directly: dataclasses.replace costs ~4 us, and every callout plans once or twice.
        return Plan(self.book, self.applied, charges(self.book, self.applied, estimate, self.hold, self.now),
                    estimate, self.lease, self.hold, self.now, cap, self.choices)

    def refitted(self, used: Sequence[float]) -> Plan | None:
        """A smaller capped plan that fits the levels `used` (of a denied reserve), if there is one."""
        if self.cap is None:
            return None
        allowance = fitted(self.estimate, self.choices, self.applied.rules, used, self.price)
        if allowance is None or allowance.cap >= self.cap:
            return None
        return self.with_estimate(allowance.estimate, allowance.cap)


def charges(book: Rulebook, applied: Applicable, estimate: Estimate, hold: float, now: float) -> list[Charge]:
    """One charge per applicable limit: tokens the whole estimate, spend its price, requests and
    slots one each (the same charges as admission.plan_charges, from the precomputed rules)."""
    # What each unit charges, computed once per request rather than once per limit.
    tokens = estimate.prompt_tokens + estimate.completion_tokens
    spend = amount("spend", estimate, applied.price) if applied.spends else 0
    out: list[Charge] = []
    new = tuple.__new__  # NamedTuples built without their Python-level __new__: all fields given
    for rule in applied.rules:
        if rule.fixed is not None:
            out.append(rule.fixed)  # a request bucket: the same charge for every request
            continue
        counter, unit = rule.counter, rule.unit
        charged = tokens if unit == "tokens" else spend if unit == "spend" else 1
        if counter == "bucket":
            out.append(new(Charge, (rule.key, "bucket", rule.cap, charged, rule.enforced, MINUTE, 0.0, 0.0)))
        elif counter == "slots":
            out.append(new(Charge, (rule.key, "slots", rule.cap, 1, rule.enforced, MINUTE, 0.0, hold)))
        else:
            assert rule.period is not None
            window = book.window(rule.period, now)
            out.append(new(Charge, (f"{rule.key}:{window.id}", "window", rule.cap, charged, rule.enforced, MINUTE,
                                    window.end, 0.0)))
    return out


def plan(check: Check, key_prefix: str, arrival_lease: float) -> Plan | None:
    """The charges this request would make; None when no limit applies. Raises the limit's error
    when the request is larger than an enforced limit itself."""
    assert check.token is not None and check.request is not None and check.route is not None
    policy = check.policy.limits
    book: Rulebook = policy.__dict__.get("_rulebook") or rulebook(policy)
    applied = book.applicable(key_prefix, check.token.name, check.token.team, check.route.key)
    if applied is None:
        return None
    request = check.request
    estimate = (estimate_request(request, applied.who.model, policy) if isinstance(request, ChatRequest)
                else estimate_for(request, applied.who.model, policy))
    # A slot whose release never comes (the sidecar died mid-request) frees itself after this.
    lease: float = check.route.__dict__.get("_quota_lease") or route_lease(check.route)
    capped = isinstance(request, ChatRequest) and request.max_tokens is None and applied.counts_tokens
    n = choices(request) if capped and isinstance(request, ChatRequest) else 1
    now = time.time()
    # Until the forward claims it, a slot is held only for the decision's life (the client may leave).
    hold = min(arrival_lease, lease)
    cap = None
    if capped:
        if applied.counts_spend or estimate.prompt_tokens + estimate.completion_tokens > applied.least_token_cap:
            estimate, cap = initial_allowance(applied, estimate, n)
        else:
            cap = estimate.completion_tokens // n  # initial_allowance's own shortcut, without the call
    # tuple.__new__: a NamedTuple built without its Python-level __new__ (a callout builds a plan or two).
    found = tuple.__new__(Plan, (book, applied, charges(book, applied, estimate, hold, now), estimate, lease, hold,
                                 now, cap, n))
    # Requests charge 1 and every cap is at least 1: only tokens and spend can be too large.
    if applied.counts_spend or estimate.prompt_tokens + estimate.completion_tokens > applied.least_token_cap:
        _refuse_oversized(check, found)
    return found


def route_lease(route: ModelRoute) -> float:
    """Seconds a confirmed slot is held: the longest `total` timeout of the route's deployments +
    LEASE_MARGIN; computed once per route and kept on the (immutable) route of the policy snapshot."""
    found = route.__dict__.get("_quota_lease")
    if found is None:
        found = route.__dict__["_quota_lease"] = max(d.timeouts.total for d in route.deployments) + LEASE_MARGIN
    assert isinstance(found, float)
    return found


def initial_allowance(applied: Applicable, estimate: Estimate, n: int) -> tuple[Estimate, int]:
    """A capped request's estimate and per-choice cap: the default allowance, or less when that
    is larger than an enforced limit itself (the cap tells the provider)."""
    cap = estimate.completion_tokens // n
    # When every enforced token limit holds the whole estimate and no spend limit applies, the
    # allowance fits as it is (fitted would keep it): skip the search.
    if applied.counts_spend or estimate.total > applied.least_token_cap:
        allowance = fitted(estimate, n, applied.rules, [0.0] * len(applied.rules), applied.price)
        if allowance is not None and allowance.cap < cap:
            return allowance.estimate, allowance.cap
    return estimate, cap


def _refuse_oversized(check: Check, found: Plan) -> None:
    """An enforced limit this request can never fit in, however long it waits: 429 now."""
    for limit, charge in zip(found.limits, found.charges, strict=True):
        if charge.enforced and charge.counter != "slots" and charge.amount > charge.cap:
            check.trace["limits_denied"] = [limit.name]  # counted in gateway_limit_denials_total
            raise limit_error(Level(limit, charge, 0.0, 0.0), found.who, found.zone, [], too_large=True)
