"""Per-deployment circuit breakers: stop sending traffic to a provider deployment that is failing.

closed --(N consecutive failures, or error rate over a window)--> open
open --(cool-down over)--> half_open: a bounded number of probe requests go through
half_open --(a probe succeeds)--> closed;  --(a probe fails)--> open again (a fresh cool-down)

The callout's breaker stage (sidecar/features/breaker/stage.py) peeks (`available`) to order and
skip deployments; the forwarding path takes a `Permit` for each attempt it makes and reports that
attempt's outcome. Only the forwarding path reserves probe slots, because only it is sure to report
back (a request denied by a later callout stage, or lost between Envoy and the sidecar, would
otherwise hold a probe slot forever). So the mechanism lives here, with its one writer; a webhook
guardrail's client books its calls on a breaker of its own the same way.

State lives on a `BreakerBoard` built by the app factory (`install` of the breaker feature), keyed
by deployment name, so a policy reload changes thresholds without forgetting which deployments are
failing. `breaker_open` is the 503 both the stage and the attempts answer when none is left.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from sidecar.core.errors import BreakerOpen
from sidecar.core.kinds import Outcome
from sidecar.core.routes import BreakerConfig

log = logging.getLogger("sidecar.breaker")

Clock = Callable[[], float]


class State(StrEnum):
    """A breaker's state; the values are the metric's state labels."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Permit:
    """One attempt's admission; `generation` ties its outcome to the state that admitted it."""

    breaker: Breaker
    generation: int
    probe: bool

    def record(self, outcome: Outcome) -> None:
        """Books this attempt's outcome on the breaker that admitted it."""
        self.breaker.record(self, outcome)


class Breaker:
    """One deployment's circuit breaker: consecutive failures or an error rate over a window open it; probes close it.
    """

    def __init__(self, name: str, config: BreakerConfig, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self.state = State.CLOSED
        self._generation = 0
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._window_failures = 0
        self._opened_at = 0.0
        self._probes = 0
        # The permit of every attempt admitted while closed under this generation: permits are
        # immutable and compare by value, so one object serves them all (no allocation per request).
        self._permit = Permit(self, self._generation, probe=False)

    # ---- admission ---------------------------------------------------------------------
    def available(self) -> bool:
        """Whether a request could be sent now (no probe slot is reserved)."""
        if self.state is State.CLOSED or not self.config.enabled:
            return True
        if self.state is State.OPEN:
            return self.retry_after() <= 0
        return self._probes < self.config.half_open_probes

    def acquire(self) -> Permit | None:
        """A permit for one attempt, or None while the breaker is open (or all probes are out)."""
        if self.state is State.CLOSED or not self.config.enabled:
            return self._permit
        if self.state is State.OPEN:
            if self.retry_after() > 0:
                return None
            self._move(State.HALF_OPEN, "cool-down over")
        if self._probes >= self.config.half_open_probes:
            return None
        self._probes += 1
        return Permit(self, self._generation, probe=True)

    def retry_after(self) -> float:
        """Seconds until the cool-down ends (0 unless open)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.cooldown - self._clock())

    # ---- outcomes ----------------------------------------------------------------------
    def record(self, permit: Permit, outcome: Outcome) -> None:
        """Books an outcome; ignored when the permit was admitted under an earlier state."""
        if permit.generation != self._generation or not self.config.enabled:
            return  # admitted under an earlier state: its outcome no longer decides anything
        failed = outcome in self.config.failure_on
        if permit.probe:
            self._probes -= 1
            if failed:
                self._open(f"probe failed ({outcome})")
            elif outcome == Outcome.SUCCESS:
                self._move(State.CLOSED, "probe succeeded")
            return
        if outcome == Outcome.NEUTRAL or (not failed and outcome != Outcome.SUCCESS):
            return
        self._consecutive = self._consecutive + 1 if failed else 0
        if self._consecutive >= self.config.consecutive_failures:
            self._open(f"{self._consecutive} consecutive failures (last: {outcome})")
        elif self.config.error_rate is not None and self._rate_exceeded(failed):
            self._open(f"error rate over {self.config.window:g}s reached {self.config.error_rate:g}")

    def _rate_exceeded(self, failed: bool) -> bool:
        now = self._clock()
        self._window.append((now, failed))
        self._window_failures += failed
        while self._window and self._window[0][0] < now - self.config.window:
            self._window_failures -= self._window.popleft()[1]
        total = len(self._window)
        assert self.config.error_rate is not None
        return total >= self.config.min_requests and self._window_failures >= self.config.error_rate * total

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._move(State.OPEN, reason)

    def _move(self, state: State, reason: str) -> None:
        previous, self.state = self.state, state
        self._generation += 1
        self._permit = Permit(self, self._generation, probe=False)
        self._consecutive = 0
        self._window.clear()
        self._window_failures = 0
        self._probes = 0
        level = logging.WARNING if state is State.OPEN else logging.INFO
        log.log(level, "circuit breaker %s", state.value, extra={"fields": {
            "deployment": self.name, "from": previous.value, "to": state.value, "reason": reason,
            "cooldown_s": self.config.cooldown if state is State.OPEN else None,
        }})


class BreakerBoard:
    """All breakers of one sidecar process, by deployment name; survives policy reloads."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}

    def get(self, name: str, config: BreakerConfig) -> Breaker:
        """The breaker of deployment `name`, created on first use; a changed config is applied, the state kept."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = Breaker(name, config, self._clock)
        elif breaker.config is not config and breaker.config != config:
            breaker.config = config  # a reload changed thresholds: keep the state
        return breaker

    def find(self, name: str) -> Breaker | None:
        """This deployment's breaker if it has seen a request (read only: creates none)."""
        return self._breakers.get(name)

    def breaker_states(self) -> dict[str, str]:
        """Deployment name -> `closed` / `open` / `half_open`, for metrics and health pages."""
        return {name: breaker.state.value for name, breaker in self._breakers.items()}


def breaker_open(model_key: str, breakers: Iterable[Breaker]) -> BreakerOpen:
    """The 503 for a model whose deployments are all open, with `Retry-After` (whole seconds, at least 1)."""
    breakers = list(breakers)
    names = ", ".join(b.name for b in breakers)
    # Half-open breakers with every probe out report 0: a second is the honest minimum.
    wait = max(1, math.ceil(min((b.retry_after() for b in breakers), default=1.0)))
    return BreakerOpen(
        f"Circuit breaker open for every deployment of model '{model_key}' ({names}); retry in {wait}s",
        headers={"Retry-After": str(wait)},
    )
