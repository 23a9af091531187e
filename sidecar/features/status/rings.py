"""Bounded in-memory history for the status page: traffic per minute, guardrail findings per
minute, and the last denied decisions. Owned by the app (a `StatusBoard` per app), never global.

Memory is bounded whatever the traffic: a fixed number of minute buckets, a fixed-size sample of
latencies per minute (reservoir sampling, so the percentiles stay unbiased), a capped number of
distinct denial codes and guardrail keys per minute, and a fixed-length list of denials.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]
TRAFFIC_MINUTES = 15
FINDINGS_MINUTES = 60
DENIED_KEPT = 200
SAMPLES_PER_MINUTE = 512
MAX_KEYS_PER_MINUTE = 64  # distinct codes / guardrail keys; the rest count as "other"
_MAX_ID_CHARS = 100  # request ids may come from the client (X-Request-Id)


def _bounded_inc(counter: Counter[str], key: str) -> None:
    # One place stays for "other", so a bucket never holds more than MAX_KEYS_PER_MINUTE keys.
    room = len(counter) < MAX_KEYS_PER_MINUTE - 1 or (len(counter) == MAX_KEYS_PER_MINUTE - 1 and "other" in counter)
    counter[key if key in counter or room else "other"] += 1


class _Reservoir:
    """A uniform sample of at most `size` values out of all values offered (Li's algorithm L).

    Algorithm R draws a random number for every value offered; L draws how many values to pass
    over before the next one kept, so once the sample is full a value costs a comparison and the
    draws grow only with the log of the traffic. Both keep every value with the same probability.
    """

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.seen, self.values, self._rng = size, 0, list[float](), rng
        self._w = 1.0  # algorithm L's running weight
        self._next = size  # `seen` count at which the next value is kept, once the sample is full

    def add(self, value: float) -> None:
        seen = self.seen
        self.seen = seen + 1
        if seen < self.size:
            self.values.append(value)
            if seen + 1 == self.size:
                self._skip()
        elif seen == self._next:
            self.values[self._rng.randrange(self.size)] = value
            self._skip()

    def _skip(self) -> None:
        """Draws the next kept position: geometric skip with success probability `_w` (updated first)."""
        self._w *= math.exp(math.log(_open_unit(self._rng)) / self.size)
        if self._w >= 1.0:  # rounded up from just below 1: the very next value is kept
            self._next = self.seen
            return
        self._next = self.seen + math.floor(math.log(_open_unit(self._rng)) / math.log1p(-self._w))


def _open_unit(rng: random.Random) -> float:
    """A uniform float in (0, 1): `random()` may return 0.0, whose logarithm does not exist."""
    while True:
        u = rng.random()
        if u > 0.0:
            return u


@dataclass
class _Minute:
    start: int  # epoch seconds, a multiple of 60
    requests: int = 0
    denials: Counter[str] = field(default_factory=Counter)
    latency: _Reservoir | None = None
    ttft: _Reservoir | None = None


@dataclass(frozen=True)
class MinutePoint:
    """One minute of traffic; latencies in seconds (None: no forwarded request ended that minute)."""

    start: int
    requests: int
    denied: int
    denials: dict[str, int]
    latency_p50: float | None
    latency_p99: float | None
    ttft_p50: float | None
    ttft_p99: float | None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


class TrafficRing:
    """Requests, denials by code, latency and time to first token per minute, for 15 minutes."""

    def __init__(self, clock: Clock = time.time, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._minutes: deque[_Minute] = deque(maxlen=TRAFFIC_MINUTES)

    def _current(self) -> _Minute:
        now = self._clock()
        if self._minutes:
            minute = self._minutes[-1]
            if minute.start <= now < minute.start + 60:  # the common case: no division
                return minute
        start = int(now) // 60 * 60
        self._minutes.append(minute := _Minute(start, latency=_Reservoir(SAMPLES_PER_MINUTE, self._rng),
                                               ttft=_Reservoir(SAMPLES_PER_MINUTE, self._rng)))
        return minute

    def denied(self, code: str) -> None:
        minute = self._current()
        minute.requests += 1
        _bounded_inc(minute.denials, code)

    def forwarded(self, seconds: float, first_byte_seconds: float | None) -> None:
        minute = self._current()
        minute.requests += 1
        assert minute.latency is not None and minute.ttft is not None
        minute.latency.add(seconds)
        if first_byte_seconds is not None:
            minute.ttft.add(first_byte_seconds)

    def series(self) -> list[MinutePoint]:
        """The last 15 minutes, oldest first, quiet minutes included as zeros."""
        now_start = int(self._clock()) // 60 * 60
        by_start = {m.start: m for m in self._minutes}
        points = []
        for start in range(now_start - (TRAFFIC_MINUTES - 1) * 60, now_start + 1, 60):
            minute = by_start.get(start) or _Minute(start)
            latency = minute.latency.values if minute.latency else []
            ttft = minute.ttft.values if minute.ttft else []
            points.append(MinutePoint(start, minute.requests, sum(minute.denials.values()), dict(minute.denials),
                                      percentile(latency, 50), percentile(latency, 99),
                                      percentile(ttft, 50), percentile(ttft, 99)))
        return points

    def samples(self) -> tuple[list[float], list[float]]:
        """Every kept latency and TTFT sample of the window, for its overall percentiles."""
        horizon = int(self._clock()) // 60 * 60 - (TRAFFIC_MINUTES - 1) * 60
        kept = [m for m in self._minutes if m.start >= horizon]
        return ([v for m in kept if m.latency for v in m.latency.values],
                [v for m in kept if m.ttft for v in m.ttft.values])


class FindingsRing:
    """Guardrail findings per guardrail key and minute, for the last hour."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._minutes: deque[tuple[int, Counter[str]]] = deque(maxlen=FINDINGS_MINUTES)

    def add(self, guardrail: str) -> None:
        start = int(self._clock()) // 60 * 60
        if not self._minutes or self._minutes[-1][0] != start:
            self._minutes.append((start, Counter()))
        _bounded_inc(self._minutes[-1][1], guardrail)

    def last_hour(self) -> Counter[str]:
        horizon = int(self._clock()) // 60 * 60 - (FINDINGS_MINUTES - 1) * 60
        total: Counter[str] = Counter()
        for start, counts in self._minutes:
            if start >= horizon:
                total.update(counts)
        return total


@dataclass(frozen=True)
class DeniedDecision:
    """One denial as the page lists it: names and codes only, never content or the token."""

    time: float  # epoch seconds
    request_id: str
    token: str | None
    model: str | None
    status: int
    code: str | None


class DeniedLog:
    """The last 200 denied decisions, newest last."""

    def __init__(self, clock: Clock = time.time, kept: int = DENIED_KEPT) -> None:
        self._clock = clock
        # Plain tuples (DeniedDecision's fields in order): a denial costs no dataclass until the page is read.
        self._entries: deque[tuple[float, str, str | None, str | None, int, str | None]] = deque(maxlen=kept)

    def add(self, request_id: str, token: str | None, model: str | None, status: int, code: str | None) -> None:
        self._entries.append((self._clock(), request_id[:_MAX_ID_CHARS], token, model, status, code))

    def newest_first(self) -> list[DeniedDecision]:
        return [DeniedDecision(*entry) for entry in reversed(self._entries)]


@dataclass
class StatusBoard:
    """Everything the status page remembers; one per app, built by the app factory."""

    traffic: TrafficRing = field(default_factory=TrafficRing)
    findings: FindingsRing = field(default_factory=FindingsRing)
    denied: DeniedLog = field(default_factory=DeniedLog)
