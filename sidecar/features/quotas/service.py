"""The quota stage of the callout and its finisher on the forwarding path.

Callout: every applicable limit is checked and the request's estimate reserved in one atomic
store call; a refusal is a 429 naming the limit. A concurrency slot is first held for a short
arrival lease (`arrival_lease`, 10 s by default): a client that leaves before the forward frees
it within seconds. A forward that comes later (a saturated sidecar) takes its slot again on
claim, so under such overload a concurrency limit can be exceeded briefly. A later callout
stage that denies undoes the reservation.
Forwarding path: `claim` confirms the reservation once (the slots get their full lease: the
deployment's `total` timeout + 60 s; a replayed decision is refused), `refused` releases a
reservation the forwarding path refuses, and the finisher settles it with the real usage,
however the exchange ended. Settlement happens at most once per reservation.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sidecar.callout.handoff import Decision
from sidecar.callout.pipeline import Check
from sidecar.core.chat import ChatRequest
from sidecar.core.errors import PermissionDenied, ServiceUnavailable
from sidecar.features.quotas.admission import denial, limit_error, oversized, plan_charges
from sidecar.features.quotas.allowance import cappable, choices, fitted
from sidecar.features.quotas.backend import Adjustment, BackendUnavailable, Charge, QuotaBackend, Reserved
from sidecar.features.quotas.estimate import Estimate, estimate_for
from sidecar.features.quotas.headers import DEGRADED_HEADER, SHADOW_HEADER, Level, rate_limit_headers
from sidecar.features.quotas.limits import Identity, Limit, Price
from sidecar.features.quotas.settlement import RESERVATION, Record, adjustments, refund
from sidecar.forward.exchange import OWN_RATE_LIMIT_HEADERS

if TYPE_CHECKING:
    from sidecar.features.observability.metrics import GatewayMetrics
    from sidecar.forward.exchange import Exchange

log = logging.getLogger("sidecar.quotas")
_LEASE_MARGIN = 60.0
# Reservation markers outlive the decision and the lease by this much (clock steps, Redis TIME).
_MARKER_MARGIN = 1.0


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
    metrics: GatewayMetrics | None = None
    # Seconds a decision lives (Settings.decision_ttl_seconds): markers outlive it.
    decision_ttl: float = 60.0
    # Seconds an unclaimed slot is held (Settings.arrival_lease_seconds).
    arrival_lease: float = 10.0

    async def check(self, check: Check) -> None:
        plan = _plan(check, self.key_prefix, self.arrival_lease)
        if plan is None:
            return
        # `explain` marks its Check as a dry run: look at the counters, reserve nothing.
        dry_run = check.dry_run
        reservation_id = secrets.token_hex(8)
        reserved = await self._reserve(check, plan, reservation_id, dry_run)
        smaller = plan.refitted(reserved.used) if reserved is not None and not reserved.admitted else None
        if smaller is not None:
            # The budget has room for less than the default allowance: reserve (and cap) what is left.
            plan = smaller
            reserved = await self._reserve(check, plan, reservation_id, dry_run)
        if reserved is None:
            return
        frees = reserved.frees_at or (0.0,) * len(plan.charges)
        levels = [Level(lm, c, used, reserved.now, free)
                  for lm, c, used, free in zip(plan.limits, plan.charges, reserved.used, frees, strict=True)]
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
            check.put(OWN_RATE_LIMIT_HEADERS, frozenset(name.lower() for name in headers))
        if dry_run:
            # Nothing reserved, nothing to settle; the record still carries the completion cap, so
            # `explain` shows the body the provider would get.
            check.put(RESERVATION, Record.of(reservation_id, plan.estimate, [], [], plan.lease, plan.cap))
            return
        self._report_levels(levels, plan.who)
        self._report_shadow(check, levels, plan.who)
        record = Record.of(reservation_id, plan.estimate, plan.charges, [lm.spec.unit for lm in plan.limits],
                           plan.lease, plan.cap)
        check.put(RESERVATION, record)
        check.on_deny.append(lambda: self._settle(record, refund(record), check.request_id, only_pending=True))

    async def _reserve(self, check: Check, plan: _Plan, reservation_id: str, dry_run: bool) -> Reserved | None:
        """The store's answer; None when the store is down and the limits fail open (closed: raises)."""
        try:
            return await self.backend.reserve(reservation_id, plan.charges, apply=not dry_run)
        except BackendUnavailable as exc:
            self._unavailable(check, plan.limits, exc)
            return None

    def _report_levels(self, levels: list[Level], who: Identity) -> None:
        # Calendar quotas only: alerts warn before a day's or month's quota runs out.
        if self.metrics is None:
            return
        for lv in levels:
            if lv.charge.counter == "window":
                self.metrics.quota_level(lv.limit.name, lv.limit.kind, lv.limit.scope(who), lv.used / lv.charge.cap)

    def _error(self, mode: str) -> None:
        if self.metrics is not None:
            self.metrics.quota_backend_error(mode)

    def _unavailable(self, check: Check, limits: list[Limit], exc: BackendUnavailable) -> None:
        self.counters.backend_errors += 1
        closed = [lm.name for lm in limits if not lm.shadow and not lm.fail_open]
        fields = {"request_id": check.request_id, "error": str(exc), "closed_limits": closed}
        if closed:
            self.counters.failed_closed += 1
            self._error("fail_closed")
            log.error("quota store unavailable: failing closed", extra={"fields": fields})
            raise ServiceUnavailable("Quota service temporarily unavailable; please retry",
                                     code="quota_backend_unavailable", headers={"Retry-After": "1"})
        self.counters.failed_open += 1
        self._error("fail_open")
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

    async def claim(self, decision: Decision) -> None:
        """Forwarding path, before the provider: confirm the reservation, once. Raises
        PermissionDenied (`decision_replayed`) if it was claimed or settled before."""
        record = decision.get(RESERVATION)
        if record is None:
            return
        try:
            claimed = await self.backend.claim(record.reservation_id, record.slot_keys, record.lease,
                                               self._marker_ttl())
        except BackendUnavailable as exc:
            # As at admission: the store is down, the callout's decision stands (its limits chose).
            self.counters.backend_errors += 1
            log.error("quota claim failed", extra={"fields": {"request_id": decision.request_id, "error": str(exc)}})
            return
        if not claimed:
            log.warning("decision replayed", extra={"fields": {"request_id": decision.request_id}})
            raise PermissionDenied("This policy decision was used before; send the request again",
                                   code="decision_replayed")

    async def refused(self, decision: Decision) -> None:
        """The forwarding path refused a verified decision: give back what was reserved, unless
        the reservation was claimed (a replay must not release the original's slot).

        An expired decision gives back nothing: by then its reservation was either claimed and
        settled, or abandoned (its slot came back with the arrival lease), and its marker is gone,
        so a refund could be a second one. This is what lets markers live only as long as a
        decision (`decision_ttl`) instead of a whole lease."""
        record = decision.get(RESERVATION)
        if record is None or (decision.expires_at and time.time() > decision.expires_at):
            return
        await self._settle(record, refund(record), decision.request_id, only_pending=True)

    async def finish(self, exchange: Exchange) -> None:
        record = exchange.decision.get(RESERVATION)
        if record is None:
            return
        changes = adjustments(record, exchange, exchange.policy.limits)
        await self._settle(record, changes, exchange.decision.request_id)

    async def _settle(self, record: Record, changes: list[Adjustment], request_id: str, *,
                      only_pending: bool = False) -> None:
        try:
            await self.backend.settle(record.reservation_id, changes, marker_ttl=self._marker_ttl(),
                                      only_pending=only_pending)
        except BackendUnavailable as exc:
            # Slots still expire with their lease; token usage of this request is lost to the counters.
            self.counters.settle_errors += 1
            self._error("settle")
            log.error("quota settlement failed", extra={"fields": {"request_id": request_id, "error": str(exc)}})

    def _marker_ttl(self) -> float:
        # A marker must outlive every chance to use the decision (its lifetime): after that every
        # forward is refused as expired and touches no counter (see `refused`).
        return self.decision_ttl + _MARKER_MARGIN


def _trace(check: Check, levels: list[Level], estimate: Estimate, cap: int | None) -> None:
    """What `explain` shows: every applicable limit, its level and whether this request fits."""
    check.trace["limits"] = {
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
    lease: float  # seconds a confirmed slot is held if its release never comes
    hold: float  # seconds an unclaimed slot is held: min(arrival lease, lease)
    now: float
    cap: int | None = None  # the provider's completion cap per choice (sidecar.features.quotas.allowance)
    choices: int = 1

    def with_estimate(self, estimate: Estimate, cap: int | None) -> _Plan:
        charges = plan_charges(self.limits, self.who, estimate, self.price, self.zone, self.key_prefix,
                               self.hold, self.now)
        # Built directly: dataclasses.replace costs ~4 us, and every callout plans once or twice.
        return _Plan(self.who, self.limits, charges, estimate, self.zone, self.price, self.key_prefix, self.lease,
                     self.hold, self.now, cap, self.choices)

    def refitted(self, used: tuple[float, ...]) -> _Plan | None:
        """A smaller capped plan that fits the levels `used` (of a denied reserve), if there is one."""
        if self.cap is None:
            return None
        allowance = fitted(self.estimate, self.choices, self.limits, self.charges, used, self.price)
        if allowance is None or allowance.cap >= self.cap:
            return None
        return self.with_estimate(allowance.estimate, allowance.cap)


def _plan(check: Check, key_prefix: str, arrival_lease: float) -> _Plan | None:
    """The charges this request would make; None when no limit applies."""
    assert check.token is not None and check.request is not None and check.route is not None
    policy = check.policy.limits
    who = Identity(check.token.name, check.token.team, check.route.key)
    limits = policy.applicable(who)
    if not limits:
        return None
    zone = ZoneInfo(policy.timezone)
    estimate = estimate_for(check.request, who.model, policy)
    # A slot whose release never comes (the sidecar died mid-request) frees itself after this.
    lease = max(d.timeouts.total for d in check.route.deployments) + _LEASE_MARGIN
    request = check.request
    capped = isinstance(request, ChatRequest) and cappable(request, limits)
    n = choices(request) if capped and isinstance(request, ChatRequest) else 1
    # Until the forward claims it, a slot is held only for the decision's life (the client may leave).
    plan = _Plan(who, limits, [], estimate, zone, policy.price(who.model), key_prefix, lease,
                 min(arrival_lease, lease), time.time(), choices=n)
    if capped:
        plan = plan.with_estimate(estimate, estimate.completion_tokens // n)
        # An allowance larger than a limit itself shrinks to fit it (the cap tells the provider).
        plan = plan.refitted(tuple(0.0 for _ in limits)) or plan
    else:
        plan = plan.with_estimate(estimate, None)
    too_large = oversized([Level(lm, c, 0.0, 0.0) for lm, c in zip(limits, plan.charges, strict=True)])
    if too_large is not None:
        check.trace["limits_denied"] = [too_large.limit.name]  # counted in gateway_limit_denials_total
        raise limit_error(too_large, who, zone, [], too_large=True)
    return plan
