"""Where guardrails, quotas, the breaker and metrics plug into the request path.

The app factory builds one `Extensions` and each feature's `install()` appends to it, so a
feature adds behaviour without rewiring the callout or the forwarding path:

- `stages` run in the callout, by name in `callout.pipeline.STAGE_ORDER` (deny by raising
  GatewayError);
- `arrivals` run on the forwarding path once the decision is verified, before the provider is
  called (the quota reservation is claimed here: a decision replayed is refused);
- `refusals` run when the forwarding path refuses a verified decision before calling the
  provider: they release what the callout reserved (idempotent per reservation);
- `request_editors` change the provider-bound body on the forwarding path (masking, rewrites);
- `output_guards` see the answer before the client does (whole completions and stream chunks);
  `async_output_guards` then, awaiting I/O (webhook guardrails' detectors);
- `finishers` run exactly once when a forwarded exchange ends, however it ended (usage
  settlement, breaker bookkeeping, metrics): success, provider error, timeout or disconnect;
  `exchange_observers` are the plain-function kind for what only records in memory (metrics,
  the status page): they run first, without a coroutine each;
- `decision_observers` see each callout decision once it is made (the error for a denial, else
  None, and the seconds the callout took); they only record (metrics and the decision log line,
  the status page), never change the decision. They run on the callout's hot path: plain
  functions, called in order of installation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sidecar.callout.handoff import Decision
from sidecar.callout.pipeline import Check, Stage
from sidecar.core.errors import GatewayError
from sidecar.core.types import JSONDict
from sidecar.forward.exchange import AsyncOutputGuard, Exchange, OutputGuard
from sidecar.policy.snapshot import Policy

RequestEditor = Callable[[JSONDict, Decision, Policy], None]


OutputGuardFactory = Callable[[Decision, Policy], OutputGuard | None]
AsyncOutputGuardFactory = Callable[[Decision, Policy], AsyncOutputGuard | None]
Finisher = Callable[[Exchange], Awaitable[None]]
ExchangeObserver = Callable[[Exchange], None]
DecisionObserver = Callable[[Check, GatewayError | None, float], None]  # (check, error or None, seconds)
Arrival = Callable[[Decision], Awaitable[None]]
Refusal = Callable[[Decision], Awaitable[None]]


@dataclass
class Extensions:
    stages: dict[str, Stage] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    request_editors: list[RequestEditor] = field(default_factory=list)
    output_guards: list[OutputGuardFactory] = field(default_factory=list)
    async_output_guards: list[AsyncOutputGuardFactory] = field(default_factory=list)  # run after output_guards
    finishers: list[Finisher] = field(default_factory=list)
    exchange_observers: list[ExchangeObserver] = field(default_factory=list)  # before finishers
    decision_observers: list[DecisionObserver] = field(default_factory=list)
