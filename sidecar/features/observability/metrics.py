"""The gateway's Prometheus metrics: one registry per app, small recording methods.

Every feature records through these methods (never through prometheus_client directly), so
names, labels and the rule that label values stay bounded live in one place: token names and
model keys come from the policy, unknown ones become "unknown"; no raw token, request id,
client-supplied string or message content ever becomes a label value.

With several sidecar workers (GATEWAY_SIDECAR_WORKERS > 1) prometheus_client runs in its
multiprocess mode (sidecar/features/observability/multiprocess.py): every worker's values go to
shared files and /metrics, on whichever worker answers, renders the sum over all workers. The
series keep their names and labels; only how gauges combine across workers needs saying (below).
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from sidecar.features.observability.multiprocess import PodCollector, shared_dir

UNKNOWN = "unknown"
BREAKER_STATES = ("closed", "half_open", "open")
# LLM calls take from tens of milliseconds (cached, tiny) to minutes (long generations).
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CALLOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
M = TypeVar("M", bound=MetricWrapperBase)
# How a gauge's values from several workers combine (prometheus_client's multiprocess_mode); `live`:
# a worker that has exited no longer counts.
GaugeMode = Literal["all", "livemax", "livemostrecent"]


class Children(Generic[M]):
    """A labelled metric's children by label values, each looked up through `labels()` once.

    `labels()` checks its arguments, converts every value to str and takes a lock on each call;
    a request records half a dozen series, so the child is kept here instead. Bounded like the
    metric itself: one entry per label-value tuple, and a child is created (a series appears in
    /metrics) only when first recorded, as before. Children are never removed from a metric.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        """The child for these label values (strings, in the metric's label order)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class GatewayMetrics:
    """The sidecar's Prometheus metrics in one registry (names follow Prometheus' conventions: `_seconds`, counters'
    `_total`).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # Multiprocess mode when this process was started with PROMETHEUS_MULTIPROC_DIR (N > 1 workers).
        path = shared_dir()
        self.multiprocess = path is not None
        # This process's metrics; /metrics renders `exposed`: the same registry with one process, the
        # sum of every worker's files with several.
        self.registry = CollectorRegistry(auto_describe=True)
        self.exposed = self.registry
        if path is not None:
            self.exposed = CollectorRegistry()
            self.exposed.register(PodCollector(path))
        r = self.registry
        self.requests = Counter("gateway_requests", "Chat completion requests by final status",
                                ["model", "status", "token"], registry=r)
        self.latency = Histogram("gateway_request_duration_seconds", "Forwarded requests, start to last byte",
                                 ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds", "Forwarded requests, start to first byte "
                              "of the answer (first chunk of a stream)", ["model"], buckets=_TTFT_BUCKETS, registry=r)
        self.tokens = Counter("gateway_tokens", "Tokens used, as reported by the provider",
                              ["model", "token", "kind"], registry=r)
        self.spend = Counter("gateway_spend_usd", "Spend in USD at the policy's prices (limits.models)",
                             ["model", "token"], registry=r)
        self.callout = Histogram("gateway_callout_duration_seconds", "Time the callout took to decide",
                                 buckets=_CALLOUT_BUCKETS, registry=r)
        self.guardrail_findings = Counter("gateway_guardrail_findings", "Guardrail findings",
                                          ["guardrail", "category", "action"], registry=r)
        self.webhook_calls = Counter("gateway_guardrail_webhook_calls", "Webhook guardrail calls by outcome: ok, "
                                     "timeout, connect, http_error, invalid_answer, breaker_open (not sent)",
                                     ["guardrail", "outcome"], registry=r)
        self.webhook_latency = Histogram("gateway_guardrail_webhook_duration_seconds", "Webhook guardrail calls, "
                                         "sent to answered or failed", ["guardrail"], buckets=_CALLOUT_BUCKETS,
                                         registry=r)
        self.limit_denials = Counter("gateway_limit_denials", "Requests denied by a quota or rate limit",
                                     ["limit"], registry=r)
        self.quota_backend_errors = Counter(
            "gateway_quota_backend_errors", "Quota store calls that failed, by what the gateway did: "
            "fail_open (admitted unchecked), fail_closed (denied 503) or settle (usage lost)", ["mode"], registry=r)
        # Pod-level values with several workers (each worker has its own view):
        # - quota ratio: the one set last by any live worker, i.e. as of the last request counted in the
        #   quota (the counters themselves are shared, in Redis), as with one process;
        # - reload errors, load time: the largest over live workers (they all watch the same folder).
        self.quota_used = Gauge("gateway_quota_used_ratio", "Used / cap of a calendar quota (day or month) "
                                "as of the last request it counted; scope is e.g. token=NAME",
                                ["limit", "kind", "scope"], registry=r, multiprocess_mode=self._mode("livemostrecent"))
        self.breaker = self._breaker_metric()
        self.reloads = Counter("gateway_policy_reloads", "Policy reload attempts", ["outcome"], registry=r)
        self.reload_errors = Gauge("gateway_policy_reload_errors", "Errors in the last rejected policy change; "
                                   "0 once a valid policy is loaded", registry=r,
                                   multiprocess_mode=self._mode("livemax"))
        self.policy = self._policy_metric()
        self.loaded_at = Gauge("gateway_policy_loaded_timestamp_seconds", "When the serving policy was loaded",
                               registry=r, multiprocess_mode=self._mode("livemax"))
        self._version: str | None = None  # the policy version last set to 1 (multiprocess mode)
        # The children each request records to (see `Children`); requests by (model, status as int, token).
        self._requests: dict[tuple[str, int, str], Counter] = {}
        self._latency, self._ttft = Children(self.latency), Children(self.ttft)
        self._tokens, self._spend = Children(self.tokens), Children(self.spend)
        self._findings, self._limit_denials = Children(self.guardrail_findings), Children(self.limit_denials)
        self._webhook_calls, self._webhook_latency = Children(self.webhook_calls), Children(self.webhook_latency)
        self._quota_used = Children(self.quota_used)

    # Enum and Info cannot be shared between processes: with several workers, gauges with the series
    # they expose (same names, labels and help). Each worker has its own breakers and reloads the
    # policy on its own, so the pod-level value is the largest over live workers: a breaker state is
    # 1 when at least one worker's breaker for the deployment is in it (while workers disagree, two
    # states can be 1; `open` 1 means some worker refuses the deployment), a policy version is 1
    # while some worker serves it.
    def _breaker_metric(self) -> Enum | Gauge:
        help_text = "Circuit breaker state per deployment"
        if self.multiprocess:
            return Gauge("gateway_breaker_state", help_text, ["deployment", "gateway_breaker_state"],
                         registry=self.registry, multiprocess_mode="livemax")
        return Enum("gateway_breaker_state", help_text, ["deployment"], states=list(BREAKER_STATES),
                    registry=self.registry)

    def _policy_metric(self) -> Info | Gauge:
        help_text = "The policy version (content hash) serving requests"
        if self.multiprocess:
            return Gauge("gateway_policy_info", help_text, ["version"], registry=self.registry,
                         multiprocess_mode="livemax")
        return Info("gateway_policy", help_text, registry=self.registry)

    def _mode(self, mode: GaugeMode) -> GaugeMode:
        """`mode` with several workers; with one process prometheus_client's default, so a gauge records
        as it always has (a `mostrecent` mode would read the clock on every set)."""
        return mode if self.multiprocess else "all"

    # ---- requests (the callout records denials, the forwarding finisher the rest) -----------
    def request(self, model: str | None, status: int, token: str | None) -> None:
        """Counts one request by model key, final HTTP status and token name."""
        key = (model or UNKNOWN, status, token or UNKNOWN)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(key[0], str(status), key[2])
        child.inc()

    def exchange(self, model: str, token: str, seconds: float, first_byte_seconds: float | None,
                 prompt_tokens: int | None, completion_tokens: int | None) -> None:
        """Observes one forwarded exchange: duration and time to first byte in seconds, tokens by kind."""
        self._latency(model).observe(seconds)
        if first_byte_seconds is not None:
            self._ttft(model).observe(first_byte_seconds)
        if prompt_tokens:
            self._tokens(model, token, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._tokens(model, token, "completion").inc(completion_tokens)

    def callout_seconds(self, seconds: float) -> None:
        """Observes how long the callout took to decide, in seconds."""
        self.callout.observe(seconds)

    # ---- for guardrails, quotas and the breaker ----------------------------------------------
    def guardrail_finding(self, guardrail: str, category: str, action: str) -> None:
        """One finding: `guardrail` is the policy's guardrail key, `action` block|mask|log."""
        self._findings(guardrail, category, action).inc()

    def webhook_call(self, guardrail: str, outcome: str, seconds: float | None) -> None:
        """One call of a webhook guardrail (the policy's key); `seconds` is None when it was not sent."""
        self._webhook_calls(guardrail, outcome).inc()
        if seconds is not None:
            self._webhook_latency(guardrail).observe(seconds)

    def limit_denied(self, limit: str) -> None:
        """A request denied by the limit named `limit` (the policy's limit name, not a team or token)."""
        self._limit_denials(limit).inc()

    def spent(self, model: str, token: str, usd: float) -> None:
        """Adds a settled request's spend (US dollars) to `gateway_spend_usd_total{model,token}`."""
        if usd > 0:
            self._spend(model, token).inc(usd)

    def quota_backend_error(self, mode: str) -> None:
        """`mode`: fail_open | fail_closed | settle."""
        self.quota_backend_errors.labels(mode).inc()

    def quota_level(self, limit: str, kind: str, scope: str, ratio: float) -> None:
        """A calendar quota's used/cap; `scope` is built from policy names only (token=, team=, model=)."""
        self._quota_used(limit, kind, scope).set(ratio)

    def breaker_state(self, deployment: str, state: str) -> None:
        """`state` is one of closed, half_open, open; `deployment` the deployment name (provider/model)."""
        if isinstance(self.breaker, Enum):
            self.breaker.labels(deployment).state(state)
            return
        for name in BREAKER_STATES:
            self.breaker.labels(deployment, name).set(1 if name == state else 0)

    # ---- policy reloads ----------------------------------------------------------------------
    def policy_loaded(self, version: str, loaded_at: float) -> None:
        """The serving policy's version and load time (Unix seconds); clears the reload error gauge."""
        if isinstance(self.policy, Info):
            self.policy.info({"version": version})
        else:
            # A series cannot be removed from a worker's file (prometheus_client warns): the old
            # version goes to 0, which /metrics leaves out (multiprocess.PodCollector).
            if self._version is not None and self._version != version:
                self.policy.labels(self._version).set(0)
            self.policy.labels(version).set(1)
            self._version = version
        self.loaded_at.set(loaded_at)
        self.reload_errors.set(0)

    def reload(self, ok: bool, errors: int = 0) -> None:
        """Counts a reload attempt; a failed one sets the error gauge to its number of errors."""
        self.reloads.labels("success" if ok else "failure").inc()
        if not ok:
            self.reload_errors.set(errors)

    def render(self) -> bytes:
        """The registry (with several workers: the sum over all) in Prometheus' text exposition format."""
        return generate_latest(self.exposed)
