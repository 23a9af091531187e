"""Runtime settings: the one place ports, addresses and limits are defined.

Values come from environment variables (`GATEWAY_*`), so `make run`, the tests, the benchmark
and the Kubernetes manifests all start the same programs the same way.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_LISTEN_PORT = 8080
DEFAULT_SIDECAR_PORT = 8081
DEFAULT_ADMIN_PORT = 9901
DEFAULT_DEMO_PROVIDER_PORT = 8090
DEFAULT_STATUS_PORT = 8082
DEFAULT_METRICS_PORT = 9102
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# A callout denial with this status is turned back into a 503 by Envoy's local_reply_config:
# Envoy treats a 5xx from the callout as a failure of the callout itself.
SENTINEL_503 = 460


@dataclass(frozen=True)
class Settings:
    listen_address: str = "127.0.0.1"
    listen_port: int = DEFAULT_LISTEN_PORT
    sidecar_port: int = DEFAULT_SIDECAR_PORT
    # Envoy's two hops to the sidecar (the callout and the routed request) over this Unix domain
    # socket instead of loopback TCP (`make bench`: less CPU per request in both processes); "" keeps
    # them on TCP. The sidecar's TCP port stays open either way (probes, /metrics, direct tools).
    sidecar_socket: str = ""
    admin_port: int = DEFAULT_ADMIN_PORT
    demo_provider_port: int = DEFAULT_DEMO_PROVIDER_PORT
    # The read-only status page (sidecar/features/status): its own listener, loopback by default;
    # beyond loopback it needs `status_token` (GATEWAY_STATUS_TOKEN or GATEWAY_STATUS_TOKEN_FILE). 0: off.
    status_address: str = "127.0.0.1"
    status_port: int = DEFAULT_STATUS_PORT
    status_token: str | None = field(default=None, repr=False)
    # Envoy's scrape listener (on `listen_address`): GET /metrics (the sidecar's) and /stats/prometheus
    # (Envoy's own), nothing else; the client listener never serves them.
    metrics_port: int = DEFAULT_METRICS_PORT
    policies_dir: Path = Path("policies")
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    authz_timeout_seconds: float = 10.0
    drain_seconds: int = 20
    # How often the sidecar looks for policy changes (0 disables hot reload).
    policy_poll_seconds: float = 1.0
    # SSE comment sent to the client during provider silences, so Envoy and clients don't time out.
    keepalive_seconds: float = 15.0
    # Signs the decision the callout hands to the forwarding path; shared by all sidecar workers
    # (a parent `serve` hands its key to the workers it starts).
    decision_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # How long a decision may be forwarded after the callout made it (seconds). Envoy forwards
    # within milliseconds, but a sidecar saturated by a burst (1,000 streams opened at once on the
    # bench) can take over 10 s between the callout and the forward.
    decision_ttl_seconds: float = 60.0
    # How long an admitted request's concurrency slot waits for the forward to claim it (seconds):
    # a client that leaves before the forward frees its slot after this.
    arrival_lease_seconds: float = 10.0
    # Slow clients (Envoy): the whole request head must arrive within `request_headers_timeout`,
    # the whole request (head, body and the callout) within `request_timeout`; neither touches
    # the response phase, so long streams are not cut. Seconds.
    request_headers_timeout_seconds: float = 10.0
    request_timeout_seconds: float = 60.0
    # Envoy's overload manager: past 95% of this heap it stops accepting requests, past 98% it
    # resets the streams buffering most; and it accepts at most this many client connections.
    envoy_max_heap_bytes: int = 1024 * 1024 * 1024
    envoy_max_connections: int = 10000

    def __post_init__(self) -> None:
        if self.keepalive_seconds <= 0:
            raise ValueError("GATEWAY_KEEPALIVE_SECONDS must be more than 0")
        if self.decision_ttl_seconds <= 0 or self.arrival_lease_seconds <= 0:
            raise ValueError("GATEWAY_DECISION_TTL_SECONDS and GATEWAY_ARRIVAL_LEASE_SECONDS must be more than 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        base = cls()
        key = env.get("GATEWAY_DECISION_KEY")
        return replace(
            base,
            listen_address=env.get("GATEWAY_LISTEN_ADDRESS", base.listen_address),
            listen_port=int(env.get("GATEWAY_PORT", base.listen_port)),
            sidecar_port=int(env.get("GATEWAY_SIDECAR_PORT", base.sidecar_port)),
            sidecar_socket=env.get("GATEWAY_SIDECAR_SOCKET", base.sidecar_socket),
            admin_port=int(env.get("GATEWAY_ADMIN_PORT", base.admin_port)),
            demo_provider_port=int(env.get("GATEWAY_DEMO_PROVIDER_PORT", base.demo_provider_port)),
            status_address=env.get("GATEWAY_STATUS_ADDRESS", base.status_address),
            status_port=int(env.get("GATEWAY_STATUS_PORT", base.status_port)),
            status_token=_status_token(env),
            metrics_port=int(env.get("GATEWAY_METRICS_PORT", base.metrics_port)),
            policies_dir=Path(env.get("GATEWAY_POLICIES", str(base.policies_dir))),
            max_body_bytes=int(env.get("GATEWAY_MAX_BODY_BYTES", base.max_body_bytes)),
            drain_seconds=int(env.get("GATEWAY_DRAIN_SECONDS", base.drain_seconds)),
            policy_poll_seconds=float(env.get("GATEWAY_POLICY_POLL_SECONDS", base.policy_poll_seconds)),
            keepalive_seconds=float(env.get("GATEWAY_KEEPALIVE_SECONDS", base.keepalive_seconds)),
            decision_key=bytes.fromhex(key) if key else base.decision_key,
            decision_ttl_seconds=float(env.get("GATEWAY_DECISION_TTL_SECONDS", base.decision_ttl_seconds)),
            arrival_lease_seconds=float(env.get("GATEWAY_ARRIVAL_LEASE_SECONDS", base.arrival_lease_seconds)),
            request_headers_timeout_seconds=float(env.get("GATEWAY_REQUEST_HEADERS_TIMEOUT_SECONDS",
                                                          base.request_headers_timeout_seconds)),
            request_timeout_seconds=float(env.get("GATEWAY_REQUEST_TIMEOUT_SECONDS", base.request_timeout_seconds)),
            envoy_max_heap_bytes=int(env.get("GATEWAY_ENVOY_MAX_HEAP_BYTES", base.envoy_max_heap_bytes)),
            envoy_max_connections=int(env.get("GATEWAY_ENVOY_MAX_CONNECTIONS", base.envoy_max_connections)),
        )

    def env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        return {
            "GATEWAY_LISTEN_ADDRESS": self.listen_address,
            "GATEWAY_PORT": str(self.listen_port),
            "GATEWAY_SIDECAR_PORT": str(self.sidecar_port),
            "GATEWAY_SIDECAR_SOCKET": self.sidecar_socket,
            "GATEWAY_ADMIN_PORT": str(self.admin_port),
            "GATEWAY_DEMO_PROVIDER_PORT": str(self.demo_provider_port),
            "GATEWAY_STATUS_ADDRESS": self.status_address,
            "GATEWAY_STATUS_PORT": str(self.status_port),
            **({"GATEWAY_STATUS_TOKEN": self.status_token} if self.status_token else {}),
            "GATEWAY_METRICS_PORT": str(self.metrics_port),
            "GATEWAY_POLICIES": str(self.policies_dir),
            "GATEWAY_MAX_BODY_BYTES": str(self.max_body_bytes),
            "GATEWAY_DRAIN_SECONDS": str(self.drain_seconds),
            "GATEWAY_POLICY_POLL_SECONDS": str(self.policy_poll_seconds),
            "GATEWAY_KEEPALIVE_SECONDS": str(self.keepalive_seconds),
            "GATEWAY_DECISION_KEY": self.decision_key.hex(),
            "GATEWAY_DECISION_TTL_SECONDS": str(self.decision_ttl_seconds),
            "GATEWAY_ARRIVAL_LEASE_SECONDS": str(self.arrival_lease_seconds),
            "GATEWAY_REQUEST_HEADERS_TIMEOUT_SECONDS": str(self.request_headers_timeout_seconds),
            "GATEWAY_REQUEST_TIMEOUT_SECONDS": str(self.request_timeout_seconds),
            "GATEWAY_ENVOY_MAX_HEAP_BYTES": str(self.envoy_max_heap_bytes),
            "GATEWAY_ENVOY_MAX_CONNECTIONS": str(self.envoy_max_connections),
        }


def _status_token(env: Mapping[str, str]) -> str | None:
    """The status page's admin token: GATEWAY_STATUS_TOKEN, else the file GATEWAY_STATUS_TOKEN_FILE
    (a mounted Secret), stripped; None when neither is set. An unreadable file is a ValueError."""
    token = env.get("GATEWAY_STATUS_TOKEN", "").strip()
    path = env.get("GATEWAY_STATUS_TOKEN_FILE")
    if not token and path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"GATEWAY_STATUS_TOKEN_FILE={path} cannot be read: {exc.strerror}") from exc
    return token or None
