"""Each token's applicable limits with what is used and left now, read from the quota store.

The store is only peeked (`QuotaBackend.peek`): nothing is reserved or written. With the Redis
store the figures are the whole fleet's, since every replica counts in the same keys. A token
sees a limit once per counter it counts in: a per-token limit once, a per-model one per model
the token may use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sidecar.core.limits import MICRO_USD, Identity, Limit
from sidecar.core.tokens import TokenRecord
from sidecar.features.quotas.admission import plan_charges
from sidecar.features.quotas.backend import BackendUnavailable, Charge, QuotaBackend
from sidecar.features.quotas.estimate import Estimate
from sidecar.policy.snapshot import Policy

_NOTHING = Estimate(0, 0)


@dataclass(frozen=True)
class LimitView:
    """One limit as one token counts in it. Spend is in USD; `resets_at` is ISO 8601 (calendar quotas)."""

    limit: str
    kind: str
    label: str
    unit: str
    scope: str
    cap: float
    used: float | None  # None: the store could not be read
    left: float | None
    shadow: bool
    resets_at: str | None


@dataclass(frozen=True)
class _Counted:
    token: str
    limit: Limit
    scope: str
    charge: Charge


def _counted(policy: Policy, token: TokenRecord, zone: ZoneInfo, key_prefix: str, now: float) -> list[_Counted]:
    found: dict[str, _Counted] = {}
    models = sorted(token.models) if token.models is not None else sorted(policy.models.routes)
    for model in models:
        who = Identity(token.name, token.team, model)
        limits = policy.limits.applicable(who)
        charges = plan_charges(limits, who, _NOTHING, None, zone, key_prefix, 0.0, now)
        for limit, charge in zip(limits, charges, strict=True):
            found.setdefault(charge.key, _Counted(token.name, limit, limit.scope(who), charge))
    return list(found.values())


async def token_limits(policy: Policy, backend: QuotaBackend, key_prefix: str,
                       now: float) -> tuple[dict[str, list[LimitView]], str | None]:
    """Token name -> its limits, and the store's error (limits then show no figures) or None."""
    zone = ZoneInfo(policy.limits.timezone)
    counted = [c for token in policy.tokens.by_hash.values()
               for c in _counted(policy, token, zone, key_prefix, now)]
    error = None
    used: tuple[float, ...] = (0.0,) * len(counted)
    if counted:
        try:  # one store call for the whole page
            used = (await backend.peek([c.charge for c in counted])).used
        except BackendUnavailable as exc:
            error = str(exc)
    views: dict[str, list[LimitView]] = {token.name: [] for token in policy.tokens.by_hash.values()}
    for item, level in zip(counted, used, strict=True):
        views[item.token].append(_view(item, level if error is None else None))
    return views, error


def _view(item: _Counted, used: float | None) -> LimitView:
    spec, charge = item.limit.spec, item.charge
    scale = MICRO_USD if spec.unit == "spend" else 1
    resets = (datetime.fromtimestamp(charge.window_end, UTC).isoformat().replace("+00:00", "Z")
              if charge.counter == "window" else None)
    cap = charge.cap / scale
    shown = None if used is None else round(used / scale, 6)
    left = None if shown is None else round(max(0.0, cap - shown), 6)
    return LimitView(item.limit.name, item.limit.kind, spec.label, spec.unit, item.scope, cap, shown, left,
                     item.limit.shadow, resets)
