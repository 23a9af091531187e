"""The breaker state machine, driven by an injected clock."""

from __future__ import annotations

import logging

import pytest

from sidecar.core.kinds import Outcome
from sidecar.core.routes import BreakerConfig
from sidecar.forward.breaker import Breaker, BreakerBoard, Permit, State

CONNECT, TIMEOUT, SERVER_ERROR = Outcome.CONNECT, Outcome.TIMEOUT, Outcome.SERVER_ERROR
RATE_LIMITED, SUCCESS, NEUTRAL = Outcome.RATE_LIMITED, Outcome.SUCCESS, Outcome.NEUTRAL


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_of(breaker: Breaker) -> State:
    """Read through a call, so mypy does not carry one assertion's narrowing into the next."""
    return breaker.state


def make(**config: object) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker("prov/model", BreakerConfig(**config), clock), clock  # type: ignore[arg-type]


def attempt(breaker: Breaker, outcome: Outcome) -> None:
    permit = breaker.acquire()
    assert permit is not None
    permit.record(outcome)


def test_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    breaker, _ = make(consecutive_failures=3, cooldown=10.0)
    for outcome in (CONNECT, TIMEOUT, SUCCESS, SERVER_ERROR, RATE_LIMITED):
        attempt(breaker, outcome)
    assert state_of(breaker) is State.CLOSED
    attempt(breaker, SERVER_ERROR)
    assert state_of(breaker) is State.OPEN
    assert breaker.acquire() is None
    assert not breaker.available()
    assert breaker.retry_after() == 10.0


def test_neutral_outcomes_neither_count_nor_reset() -> None:
    breaker, _ = make(consecutive_failures=2)
    attempt(breaker, CONNECT)
    attempt(breaker, NEUTRAL)
    assert state_of(breaker) is State.CLOSED
    attempt(breaker, CONNECT)
    assert state_of(breaker) is State.OPEN


def test_failure_kinds_are_configurable() -> None:
    breaker, _ = make(consecutive_failures=1, failure_on=frozenset({CONNECT}))
    attempt(breaker, RATE_LIMITED)
    attempt(breaker, SERVER_ERROR)
    attempt(breaker, TIMEOUT)
    assert state_of(breaker) is State.CLOSED
    attempt(breaker, CONNECT)
    assert state_of(breaker) is State.OPEN


def test_cooldown_then_bounded_probes_then_closes_on_success() -> None:
    breaker, clock = make(consecutive_failures=1, cooldown=5.0, half_open_probes=2)
    attempt(breaker, CONNECT)
    clock.now += 4.9
    assert breaker.acquire() is None
    assert breaker.retry_after() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.available()
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and second is not None and first.probe and second.probe
    assert state_of(breaker) is State.HALF_OPEN
    assert breaker.acquire() is None, "only two probes at a time"
    assert not breaker.available()
    first.record(SUCCESS)
    assert state_of(breaker) is State.CLOSED
    second.record(CONNECT)  # a probe from the half-open period: no longer decides anything
    assert state_of(breaker) is State.CLOSED


def test_failed_probe_reopens_with_a_fresh_cooldown() -> None:
    breaker, clock = make(consecutive_failures=1, cooldown=5.0)
    attempt(breaker, TIMEOUT)
    clock.now += 5.0
    probe = breaker.acquire()
    assert probe is not None
    clock.now += 1.0
    probe.record(SERVER_ERROR)
    assert state_of(breaker) is State.OPEN
    assert breaker.retry_after() == 5.0


def test_neutral_probe_frees_its_slot_without_deciding() -> None:
    breaker, clock = make(consecutive_failures=1, cooldown=1.0, half_open_probes=1)
    attempt(breaker, CONNECT)
    clock.now += 1.0
    probe = breaker.acquire()
    assert probe is not None and breaker.acquire() is None
    probe.record(NEUTRAL)
    assert state_of(breaker) is State.HALF_OPEN
    assert breaker.acquire() is not None


def test_late_outcomes_from_before_opening_are_ignored() -> None:
    breaker, clock = make(consecutive_failures=1, cooldown=1.0)
    early = breaker.acquire()
    assert early is not None
    attempt(breaker, CONNECT)
    clock.now += 1.0
    probe = breaker.acquire()
    assert probe is not None
    early.record(SUCCESS)
    assert state_of(breaker) is State.HALF_OPEN, "a request admitted while closed does not close it"
    probe.record(SUCCESS)
    assert state_of(breaker) is State.CLOSED


def test_error_rate_over_a_window_with_minimum_requests() -> None:
    breaker, _ = make(consecutive_failures=100, error_rate=0.5, window=10.0, min_requests=4)
    for outcome in (CONNECT, SUCCESS, CONNECT):
        attempt(breaker, outcome)
    assert state_of(breaker) is State.CLOSED, "three requests are under the minimum"
    attempt(breaker, SUCCESS)
    assert state_of(breaker) is State.OPEN, "2 of 4 failed: 50%"


def test_error_rate_forgets_requests_older_than_the_window() -> None:
    breaker, clock = make(consecutive_failures=100, error_rate=0.5, window=10.0, min_requests=4)
    attempt(breaker, CONNECT)
    attempt(breaker, CONNECT)
    clock.now += 11.0
    for outcome in (SUCCESS, SUCCESS, CONNECT):
        attempt(breaker, outcome)
    assert state_of(breaker) is State.CLOSED, "1 of 3 within the window, under the minimum"
    attempt(breaker, SUCCESS)
    assert state_of(breaker) is State.CLOSED, "1 of 4: 25%"


def test_disabled_breaker_never_opens() -> None:
    breaker, _ = make(enabled=False, consecutive_failures=1)
    for _ in range(5):
        attempt(breaker, CONNECT)
    assert state_of(breaker) is State.CLOSED


def test_transitions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    breaker, clock = make(consecutive_failures=1, cooldown=1.0)
    with caplog.at_level(logging.INFO, logger="sidecar.breaker"):
        attempt(breaker, CONNECT)
        clock.now += 1.0
        attempt(breaker, SUCCESS)
    moves = [(r.fields["from"], r.fields["to"]) for r in caplog.records]  # type: ignore[attr-defined]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(r.fields["deployment"] == "prov/model" for r in caplog.records)  # type: ignore[attr-defined]
    assert caplog.records[0].levelno == logging.WARNING


def test_board_keeps_state_across_config_changes() -> None:
    clock = Clock()
    board = BreakerBoard(clock)
    breaker = board.get("a/m", BreakerConfig(consecutive_failures=1))
    attempt(breaker, CONNECT)
    again = board.get("a/m", BreakerConfig(consecutive_failures=7, cooldown=99.0))
    assert again is breaker and again.config.cooldown == 99.0
    assert board.breaker_states() == {"a/m": "open"}
    board.get("b/m", BreakerConfig())
    assert board.breaker_states() == {"a/m": "open", "b/m": "closed"}


def test_permit_is_tied_to_its_breaker() -> None:
    breaker, _ = make()
    permit = breaker.acquire()
    assert isinstance(permit, Permit) and permit.breaker is breaker and not permit.probe


def test_closed_permits_are_shared_per_state_and_a_new_state_issues_new_ones() -> None:
    breaker, clock = make(consecutive_failures=1, cooldown=1.0)
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and first is second and not first.probe  # immutable, equal by value: one object
    attempt(breaker, CONNECT)  # opens
    clock.now += 1.0
    attempt(breaker, SUCCESS)  # a probe closes it again
    after = breaker.acquire()
    assert after is not None and after != first and after.generation > first.generation
    first.record(CONNECT)  # admitted before the breaker opened: ignored, even though it is closed again
    assert state_of(breaker) is State.CLOSED and breaker.acquire() is after


def test_board_applies_an_equal_config_object_without_a_change() -> None:
    board = BreakerBoard(Clock())
    breaker = board.get("a/m", BreakerConfig(consecutive_failures=1))
    attempt(breaker, CONNECT)
    assert board.get("a/m", BreakerConfig(consecutive_failures=1)) is breaker
    assert board.breaker_states() == {"a/m": "open"}
