"""What the status page shows, gathered from the app's own objects into one JSON-able snapshot.

Sources: the PolicyStore (serving version, load time), the PolicyWatcher (last rejected change),
the BreakerBoard (state and cool-down left per deployment), the quota store (peeked), and the
StatusBoard's rings (traffic, findings, denials). Tokens appear by name only: never the token or
its hash. Times are ISO 8601 UTC strings, durations seconds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sidecar.features.quotas.service import QuotaService
from sidecar.features.status.quota_view import LimitView, token_limits
from sidecar.features.status.rings import MinutePoint, StatusBoard, percentile
from sidecar.forward.breaker import BreakerBoard, State
from sidecar.policy.snapshot import Policy
from sidecar.policy.store import PolicyStore
from sidecar.policy.watcher import PolicyWatcher


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PolicyView:
    version: str
    loaded_at: str
    rejected_version: str | None
    rejected_at: str | None
    rejected_errors: list[str]


@dataclass(frozen=True)
class DeploymentView:
    name: str
    provider: str
    priority: int
    weight: float
    breaker: str  # closed | open | half_open
    cooldown_left: float  # seconds until an open breaker lets a probe through


@dataclass(frozen=True)
class ModelView:
    key: str
    category: str
    deployments: list[DeploymentView]


@dataclass(frozen=True)
class TokenView:
    name: str
    team: str | None
    models: list[str] | None  # None: every model
    expires: str | None
    expired: bool
    limits: list[LimitView]


@dataclass(frozen=True)
class GuardrailView:
    key: str
    type: str
    action: str
    direction: str
    default_on: bool
    findings_last_hour: int


@dataclass(frozen=True)
class TrafficView:
    minutes: list[MinutePoint]
    requests: int
    denied: int
    denials: dict[str, int]
    latency_p50: float | None
    latency_p99: float | None
    ttft_p50: float | None
    ttft_p99: float | None


@dataclass(frozen=True)
class DeniedView:
    time: str
    request_id: str
    token: str | None
    model: str | None
    status: int
    code: str | None


@dataclass(frozen=True)
class Status:
    generated_at: str
    policy: PolicyView
    quota_store: str  # memory | redis
    quota_store_error: str | None
    models: list[ModelView]
    tokens: list[TokenView]
    guardrails: list[GuardrailView]
    traffic: TrafficView
    denied: list[DeniedView]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


async def collect(store: PolicyStore, watcher: PolicyWatcher | None, breakers: BreakerBoard | None,
                  quotas: QuotaService | None, board: StatusBoard) -> Status:
    policy, now = store.current, time.time()
    limits: dict[str, list[LimitView]] = {}
    error = None
    if quotas is not None:
        limits, error = await token_limits(policy, quotas.backend, quotas.key_prefix, now)
    return Status(
        generated_at=iso(now),
        policy=_policy(store, watcher),
        quota_store=policy.limits.store.backend,
        quota_store_error=error,
        models=_models(policy, breakers),
        tokens=_tokens(policy, limits, now),
        guardrails=_guardrails(policy, board),
        traffic=_traffic(board),
        denied=[DeniedView(iso(d.time), d.request_id, d.token, d.model, d.status, d.code)
                for d in board.denied.newest_first()],
    )


def _policy(store: PolicyStore, watcher: PolicyWatcher | None) -> PolicyView:
    rejection = watcher.last_rejection if watcher is not None else None
    return PolicyView(store.current.version, iso(store.loaded_at),
                      rejection.version if rejection else None, iso(rejection.at) if rejection else None,
                      list(rejection.errors) if rejection else [])


def _models(policy: Policy, breakers: BreakerBoard | None) -> list[ModelView]:
    views = []
    for key, route in sorted(policy.models.routes.items()):
        deployments = []
        for d in route.deployments:
            breaker = breakers.find(d.name) if breakers is not None else None
            state = breaker.state if breaker is not None else State.CLOSED  # no traffic yet: closed
            left = breaker.retry_after() if breaker is not None else 0.0
            deployments.append(DeploymentView(d.name, d.provider, d.priority, d.weight, state.value, round(left, 1)))
        views.append(ModelView(key, route.category, deployments))
    return views


def _tokens(policy: Policy, limits: dict[str, list[LimitView]], now: float) -> list[TokenView]:
    views = []
    for record in sorted(policy.tokens.by_hash.values(), key=lambda r: r.name):
        expires = record.expires.timestamp() if record.expires else None
        views.append(TokenView(record.name, record.team, sorted(record.models) if record.models is not None else None,
                               iso(expires) if expires is not None else None,
                               expires is not None and expires <= now, limits.get(record.name, [])))
    return views


def _guardrails(policy: Policy, board: StatusBoard) -> list[GuardrailView]:
    counts = board.findings.last_hour()
    return [GuardrailView(g.key, g.type, g.action, g.direction, g.default_on, counts.get(g.key, 0))
            for g in policy.guardrails.guardrails]


def _traffic(board: StatusBoard) -> TrafficView:
    minutes = board.traffic.series()
    latency, ttft = board.traffic.samples()
    denials: dict[str, int] = {}
    for point in minutes:
        for code, count in point.denials.items():
            denials[code] = denials.get(code, 0) + count
    return TrafficView(minutes, sum(p.requests for p in minutes), sum(p.denied for p in minutes), denials,
                       percentile(latency, 50), percentile(latency, 99), percentile(ttft, 50), percentile(ttft, 99))
