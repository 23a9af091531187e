"""The quota stage of the callout and its finisher on the forwarding path.

Callout: every applicable limit is checked and the request's estimate reserved in one atomic
store call; a refusal is a 429 naming the limit. Finisher: the reservation is settled with the
real usage and the request's concurrency slots are released, however the exchange ended.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sidecar.callout.pipeline import Check
from sidecar.core.errors import ServiceUnavailable
from sidecar.features.quotas.admission import denial, limit_error, oversized, plan_charges
from sidecar.features.quotas.allowance import cappable, choices, fitted
from sidecar.features.quotas.backend import BackendUnavailable, Charge, QuotaBackend, Reserved
from sidecar.features.quotas.estimate import Estimate, estimate_request
from sidecar.features.quotas.headers import DEGRADED_HEADER, SHADOW_HEADER, Level, rate_limit_headers
from sidecar.features.quotas.limits import Identity, Limit, Price
from sidecar.features.quotas.settlement import EXTRA_KEY, Record, adjustments
from sidecar.forward.exchange import OWN_RATE_LIMIT_HEADERS

if TYPE_CHECKING:
    from sidecar.forward.exchange import Exchange

log = logging.getLogger("sidecar.quotas")
_LEASE_MARGIN = 60.0


@dataclass
class QuotaCounters:
    """What the quota layer did, for metrics and tests."""

    backend_errors: int = 0
    failed_open: int = 0
    failed_closed: int = 0
    shadow_exceeded: int = 0
    settle_errors: int = 0


@dataclass
class QuotaService:
    backend: QuotaBackend
    key_prefix: str = "cgt"
    counters: QuotaCounters = field(default_factory=QuotaCounters)

    async def check(self, check: Check) -> None:
        plan = _plan(check, self.key_prefix)
        if plan is None:
            return
        # `explain` marks its Check as a dry run: look at the counters, reserve nothing.
        dry_run = bool(getattr(check, "dry_run", False))
        reservation_id = secrets.token_hex(8)
        reserved = await self._reserve(check, plan, reservation_id, dry_run)
        smaller = plan.refitted(reserved.used) if reserved is not None and not reserved.admitted else None
        if smaller is not None:
            # The budget has room for less than the default allowance: reserve (and cap) what is left.
            plan = smaller
            reserved = await self._reserve(check, plan, reservation_id, dry_run)
        if reserved is None:
            return
        levels = [Level(lm, c, used, reserved.now)
                  for lm, c, used in zip(plan.limits, plan.charges, reserved.used, strict=True)]
        headers = rate_limit_headers(levels)
        check.client_headers.update(headers)
        if dry_run:
            _trace(check, levels, plan.estimate, plan.cap)
        if not reserved.admitted:
            error = denial(levels, plan.who, plan.zone)
            # Counted by the metrics as limit denials (gateway_limit_denials_total).
            check.trace["limits_denied"] = [lv.limit.name for lv in levels if not lv.fits() and not lv.limit.shadow]
            if not dry_run:
                log.info("quota denied", extra={"fields": {
                    "request_id": check.request_id, "code": error.code, "message": error.message}})
            raise error
        if headers:
            check.extra[OWN_RATE_LIMIT_HEADERS] = sorted(name.lower() for name in headers)
        if not dry_run:
            self._report_shadow(check, levels, plan.who)
        # A dry run reserved nothing, so its record has nothing to settle; it still carries the
        # completion cap, so `explain` shows the body the provider would get.
        charges, units = ([], []) if dry_run else (plan.charges, [lm.spec.unit for lm in plan.limits])
        record = Record.of(reservation_id, plan.estimate, charges, units, completion_cap=plan.cap)
        check.extra[EXTRA_KEY] = record.to_extra()

    async def _reserve(self, check: Check, plan: _Plan, reservation_id: str, dry_run: bool) -> Reserved | None:
        """The store's answer; None when the store is down and the limits fail open (closed: raises)."""
        try:
            return await self.backend.reserve(reservation_id, plan.charges, apply=not dry_run)
        except BackendUnavailable as exc:
            self._unavailable(check, plan.limits, exc)
            return None

    def _unavailable(self, check: Check, limits: list[Limit], exc: BackendUnavailable) -> None:
        self.counters.backend_errors += 1
        closed = [lm.name for lm in limits if not lm.shadow and not lm.fail_open]
        fields = {"request_id": check.request_id, "error": str(exc), "closed_limits": closed}
        if closed:
            self.counters.failed_closed += 1
            log.error("quota store unavailable: failing closed", extra={"fields": fields})
            raise ServiceUnavailable("Quota service temporarily unavailable; please retry",
                                     code="quota_backend_unavailable", headers={"Retry-After": "1"})
        self.counters.failed_open += 1
        log.error("quota store unavailable: failing open", extra={"fields": fields})
        check.client_headers[DEGRADED_HEADER] = "store-unavailable"

    def _report_shadow(self, check: Check, levels: list[Level], who: Identity) -> None:
        # A shadow limit counts like an enforced one, so `used` is after this request.
        over = [lv for lv in levels if not lv.charge.enforced and lv.used > lv.charge.cap]
        if not over:
            return
        self.counters.shadow_exceeded += 1
        names = [lv.limit.name for lv in over]
        check.client_headers[SHADOW_HEADER] = ", ".join(names)
        log.warning("shadow limit exceeded (not enforced)", extra={"fields": {
            "request_id": check.request_id, "limits": names, "token": who.token, "team": who.team,
            "model": who.model}})

    async def finish(self, exchange: Exchange) -> None:
        record = Record.from_extra(exchange.decision.extra.get(EXTRA_KEY))
        if record is None:
            return
        changes = adjustments(record, exchange, exchange.policy.limits)
        if not changes:
            return
        try:
            await self.backend.settle(record.reservation_id, changes)
        except BackendUnavailable as exc:
            # Slots still expire with their lease; token usage of this request is lost to the counters.
            self.counters.settle_errors += 1
            log.error("quota settlement failed", extra={"fields": {
                "request_id": exchange.decision.request_id, "error": str(exc)}})


def _trace(check: Check, levels: list[Level], estimate: Estimate, cap: int | None) -> None:
    """What `explain` shows: every applicable limit, its level and whether this request fits."""
    trace = getattr(check, "trace", None)
    if not isinstance(trace, dict):
        return
    trace["limits"] = {
        "estimate": {"prompt_tokens": estimate.prompt_tokens, "completion_tokens": estimate.completion_tokens},
        "completion_cap": cap,
        "applicable": [{"limit": lv.limit.name, "cap": lv.charge.cap, "used": round(lv.used, 3),
                        "requested": lv.charge.amount, "fits": lv.fits(), "shadow": lv.limit.shadow}
                       for lv in levels],
    }


@dataclass(frozen=True)
class _Plan:
    who: Identity
    limits: list[Limit]
    charges: list[Charge]
    estimate: Estimate
    zone: ZoneInfo
    price: Price | None
    key_prefix: str
    lease: float
    now: float
    cap: int | None = None  # the provider's completion cap per choice (sidecar.features.quotas.allowance)
    choices: int = 1

    def with_estimate(self, estimate: Estimate, cap: int | None) -> _Plan:
        charges = plan_charges(self.limits, self.who, estimate, self.price, self.zone, self.key_prefix,
                               self.lease, self.now)
        return replace(self, charges=charges, estimate=estimate, cap=cap)

    def refitted(self, used: tuple[float, ...]) -> _Plan | None:
        """A smaller capped plan that fits the levels `used` (of a denied reserve), if there is one."""
        if self.cap is None:
            return None
        allowance = fitted(self.estimate, self.choices, self.limits, self.charges, used, self.price)
        if allowance is None or allowance.cap >= self.cap:
            return None
        return self.with_estimate(allowance.estimate, allowance.cap)


def _plan(check: Check, key_prefix: str) -> _Plan | None:
    """The charges this request would make; None when no limit applies."""
    assert check.token is not None and check.request is not None and check.route is not None
    policy = check.policy.limits
    who = Identity(check.token.name, check.token.team, check.route.key)
    limits = policy.applicable(who)
    if not limits:
        return None
    zone = ZoneInfo(policy.timezone)
    estimate = estimate_request(check.request, who.model, policy)
    # A slot whose release never comes (the sidecar died mid-request) frees itself after this.
    lease = max(d.timeouts.total for d in check.route.deployments) + _LEASE_MARGIN
    plan = _Plan(who, limits, [], estimate, zone, policy.price(who.model), key_prefix, lease, time.time())
    if cappable(check.request, limits):
        n = choices(check.request)
        plan = replace(plan, choices=n).with_estimate(estimate, estimate.completion_tokens // n)
        # An allowance larger than a limit itself shrinks to fit it (the cap tells the provider).
        plan = plan.refitted(tuple(0.0 for _ in limits)) or plan
    else:
        plan = plan.with_estimate(estimate, None)
    too_large = oversized([Level(lm, c, 0.0, 0.0) for lm, c in zip(limits, plan.charges, strict=True)])
    if too_large is not None:
        raise limit_error(too_large, who, zone, [], too_large=True)
    return plan
