"""The status page's memory: bounded whatever the traffic, and the figures it draws from it."""

from __future__ import annotations

import random

from sidecar.features.status.rings import (
    DENIED_KEPT,
    MAX_KEYS_PER_MINUTE,
    SAMPLES_PER_MINUTE,
    TRAFFIC_MINUTES,
    DeniedLog,
    FindingsRing,
    TrafficRing,
    _Reservoir,
    percentile,
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None


def test_traffic_series_has_fifteen_minutes_and_forgets_older_ones() -> None:
    clock = Clock()
    ring = TrafficRing(clock, random.Random(1))
    ring.denied("invalid_api_key")
    ring.forwarded(0.2, 0.05)
    clock.now += 60
    ring.forwarded(0.4, None)
    series = ring.series()
    assert len(series) == TRAFFIC_MINUTES
    assert [(p.requests, p.denied) for p in series[-2:]] == [(2, 1), (1, 0)]
    assert series[-2].denials == {"invalid_api_key": 1} and series[-2].ttft_p50 == 0.05
    assert series[-1].latency_p99 == 0.4 and series[-1].ttft_p50 is None
    clock.now += TRAFFIC_MINUTES * 60
    assert sum(p.requests for p in ring.series()) == 0 and ring.samples() == ([], [])


def test_memory_is_bounded_under_heavy_traffic() -> None:
    clock = Clock()
    ring = TrafficRing(clock, random.Random(2))
    for minute in range(40):
        clock.now += 60
        for i in range(SAMPLES_PER_MINUTE * 3):
            ring.forwarded(i / 1000, i / 2000)
            ring.denied(f"code-{minute}-{i}")
    latency, ttft = ring.samples()
    assert len(latency) == len(ttft) == SAMPLES_PER_MINUTE * TRAFFIC_MINUTES
    last = ring.series()[-1]
    assert last.requests == SAMPLES_PER_MINUTE * 6 and len(last.denials) == MAX_KEYS_PER_MINUTE
    assert last.denials["other"] == SAMPLES_PER_MINUTE * 3 - (MAX_KEYS_PER_MINUTE - 1)
    assert sum(last.denials.values()) == last.denied == SAMPLES_PER_MINUTE * 3
    # The sample is uniform: its median is near the true one (0.767 s of 0..1.535 s).
    assert last.latency_p50 is not None and 0.6 < last.latency_p50 < 0.9


def test_findings_count_the_last_hour_only() -> None:
    clock = Clock()
    ring = FindingsRing(clock)
    ring.add("pii")
    clock.now += 30 * 60
    ring.add("pii")
    ring.add("prompt-guard")
    assert ring.last_hour() == {"pii": 2, "prompt-guard": 1}
    clock.now += 45 * 60
    assert ring.last_hour() == {"pii": 1, "prompt-guard": 1}


def test_denied_log_keeps_the_last_two_hundred_newest_first() -> None:
    log = DeniedLog(Clock())
    for i in range(DENIED_KEPT + 50):
        log.add(f"req_{i}", "demo", "gpt-4", 429, "requests_per_minute")
    entries = log.newest_first()
    assert len(entries) == DENIED_KEPT
    assert (entries[0].request_id, entries[-1].request_id) == (f"req_{DENIED_KEPT + 49}", "req_50")
    log.add("x" * 5000, None, None, 401, "invalid_api_key")
    assert len(log.newest_first()[0].request_id) == 100


def test_the_reservoir_keeps_every_value_with_the_same_chance() -> None:
    rng = random.Random(3)
    offered, size, runs = 300, 15, 4000
    kept = [0] * offered
    for _ in range(runs):
        reservoir = _Reservoir(size, rng)
        for value in range(offered):
            reservoir.add(float(value))
        assert reservoir.seen == offered and len(set(reservoir.values)) == size
        for sample in reservoir.values:
            kept[int(sample)] += 1
    # Each value is kept in size/offered of the runs (200 here): early, middle and late values alike.
    expected = runs * size / offered
    for tenth in range(10):
        share = kept[tenth * 30:(tenth + 1) * 30]
        assert abs(sum(share) / len(share) - expected) < 0.1 * expected
    assert 0.6 * expected < min(kept) and max(kept) < 1.4 * expected


def test_a_reservoir_keeps_everything_until_it_is_full() -> None:
    reservoir = _Reservoir(4, random.Random(5))
    for value in (1.0, 2.0, 3.0):
        reservoir.add(value)
    assert reservoir.values == [1.0, 2.0, 3.0]
