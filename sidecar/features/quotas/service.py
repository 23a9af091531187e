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
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sidecar.callout.handoff import Decision
from sidecar.callout.pipeline import Check
from sidecar.core.errors import PermissionDenied, ServiceUnavailable
from sidecar.core.limits import Limit
from sidecar.features.quotas.admission import denial
from sidecar.features.quotas.backend import Adjustment, BackendUnavailable, QuotaBackend, Reserved
from sidecar.features.quotas.estimate import Estimate
from sidecar.features.quotas.headers import DEGRADED_HEADER, SHADOW_HEADER, Level, admitted_headers, rate_limit_headers
from sidecar.features.quotas.planning import Plan, plan
from sidecar.features.quotas.settlement import RESERVATION, Record, adjustments, refund
from sidecar.forward.exchange import OWN_RATE_LIMIT_HEADERS

if TYPE_CHECKING:

    from sidecar.features.observability.metrics import GatewayMetrics
    from sidecar.forward.exchange import Exchange

log = logging.getLogger("sidecar.quotas")
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
        """The callout stage: reserve this request's charges on every applicable limit, or raise
        the 429 (RateLimited / QuotaExhausted) of the limit that keeps it out longest; 503 when the
        store is down and a limit fails closed. Adds the x-ratelimit-* headers and the reservation."""
        found = plan(check, self.key_prefix, self.arrival_lease)
        if found is None:
            return
        # `explain` marks its Check as a dry run: look at the counters, reserve nothing.
        dry_run = check.dry_run
        reservation_id = os.urandom(8).hex()  # secrets.token_hex(8), without its two Python calls
        try:  # as _reserve, inline: this await runs on every callout
            reserved: Reserved | None = await self.backend.reserve(reservation_id, found.charges, apply=not dry_run)
        except BackendUnavailable as exc:
            self._unavailable(check, found.limits, exc)
            reserved = None
        smaller = found.refitted(reserved.used) if reserved is not None and not reserved.admitted else None
        if smaller is not None:
            # The budget has room for less than the default allowance: reserve (and cap) what is left.
            found = smaller
            reserved = await self._reserve(check, found, reservation_id, dry_run)
        if reserved is None:
            return
        if dry_run or not reserved.admitted:
            self._look(check, found, reserved, reservation_id)
            return
        applied, charges, used = found.applied, found.charges, reserved.used
        # The levels as Level objects are for denials and `explain`: an admitted request needs
        # only its headers, gauges and the shadow check, read from the plan's precomputed indexes.
        if applied.header_names:
            check.client_headers.update(
                admitted_headers(applied.request_headers, applied.token_headers, charges, used, reserved.now))
            check.put(OWN_RATE_LIMIT_HEADERS, applied.header_names)
        if applied.windows and self.metrics is not None:
            self._report_levels(found, used)
        if applied.shadows:
            self._report_shadow(check, found, used)
        record = Record.of(reservation_id, found.estimate, charges, applied.units, found.lease, found.cap,
                            applied.layout)
        check.put(RESERVATION, record)
        check.on_deny.append(lambda: self._settle(record, refund(record), check.request_id, only_pending=True))

    def _look(self, check: Check, found: Plan, reserved: Reserved, reservation_id: str) -> None:
        """A dry run (`explain`) or a denial: every level, the trace and the limit's error."""
        frees = reserved.frees_at or (0.0,) * len(found.charges)
        levels = [Level(lm, c, used, reserved.now, free)
                  for lm, c, used, free in zip(found.limits, found.charges, reserved.used, frees, strict=True)]
        headers = rate_limit_headers(levels)
        check.client_headers.update(headers)
        if check.dry_run:
            _trace(check, levels, found.estimate, found.cap)
        if not reserved.admitted:
            error = denial(levels, found.who, found.zone)
            # Counted by the metrics as limit denials (gateway_limit_denials_total).
            check.trace["limits_denied"] = [lv.limit.name for lv in levels if not lv.fits() and not lv.limit.shadow]
            if not check.dry_run:
                log.info("quota denied", extra={"fields": {
                    "request_id": check.request_id, "code": error.code, "message": error.message}})
            raise error
        if headers:
            check.put(OWN_RATE_LIMIT_HEADERS, frozenset(name.lower() for name in headers))
        # Nothing reserved, nothing to settle; the record still carries the completion cap, so
        # `explain` shows the body the provider would get.
        check.put(RESERVATION, Record.of(reservation_id, found.estimate, [], [], found.lease, found.cap))

    async def _reserve(self, check: Check, found: Plan, reservation_id: str, dry_run: bool) -> Reserved | None:
        """The store's answer; None when the store is down and the limits fail open (closed: raises)."""
        try:
            return await self.backend.reserve(reservation_id, found.charges, apply=not dry_run)
        except BackendUnavailable as exc:
            self._unavailable(check, found.limits, exc)
            return None

    def _report_levels(self, found: Plan, used: tuple[float, ...]) -> None:
        # Calendar quotas only: alerts warn before a day's or month's quota runs out.
        assert self.metrics is not None
        rules = found.applied.rules
        for index in found.applied.windows:
            rule = rules[index]
            self.metrics.quota_level(rule.name, rule.limit.kind, rule.scope, used[index] / rule.cap)

    def _error(self, mode: str) -> None:
        if self.metrics is not None:
            self.metrics.quota_backend_error(mode)

    def _unavailable(self, check: Check, limits: Sequence[Limit], exc: BackendUnavailable) -> None:
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

    def _report_shadow(self, check: Check, found: Plan, used: tuple[float, ...]) -> None:
        # A shadow limit counts like an enforced one, so `used` is after this request.
        over = [found.applied.rules[i].name for i in found.applied.shadows if used[i] > found.charges[i].cap]
        if not over:
            return
        self.counters.shadow_exceeded += 1
        check.client_headers[SHADOW_HEADER] = ", ".join(over)
        who = found.who
        log.warning("shadow limit exceeded (not enforced)", extra={"fields": {
            "request_id": check.request_id, "limits": over, "token": who.token, "team": who.team,
            "model": who.model}})

    async def claim(self, decision: Decision) -> None:
        """Forwarding path, before the provider: confirm the reservation, once. Raises
        PermissionDenied (`decision_replayed`) if it was claimed or settled before."""
        record = decision.get(RESERVATION)
        if record is None:
            return
        try:
            claimed = await self.backend.claim(record.reservation_id, record.slot_keys, record.lease,
                                               self.decision_ttl + _MARKER_MARGIN)  # _marker_ttl(), inline
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
        try:  # as _settle, inline: every forwarded request settles
            await self.backend.settle(record.reservation_id, changes, marker_ttl=self.decision_ttl + _MARKER_MARGIN)
        except BackendUnavailable as exc:
            self._settle_failed(exc, exchange.decision.request_id)

    async def _settle(self, record: Record, changes: list[Adjustment], request_id: str, *,
                      only_pending: bool = False) -> None:
        try:
            await self.backend.settle(record.reservation_id, changes, marker_ttl=self._marker_ttl(),
                                      only_pending=only_pending)
        except BackendUnavailable as exc:
            self._settle_failed(exc, request_id)

    def _settle_failed(self, exc: BackendUnavailable, request_id: str) -> None:
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
