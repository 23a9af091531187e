"""Pure arithmetic of the benchmark: merging rounds, percentiles, ratios and target verdicts.

Nothing here times anything, so tests can check it exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

WRK_MARKER = "BENCH_JSON "


@dataclass
class Sample:
    """One measured cell (target × scenario), merged over its interleaved rounds."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    # Per-round percentiles (wrk reports them per run; the asyncio client keeps raw latencies).
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    # Streaming only: whole-stream latency percentiles.
    total_p50_ms: list[float] = field(default_factory=list)
    total_p99_ms: list[float] = field(default_factory=list)
    # CPU seconds spent by each watched process during the rounds, by process name.
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def add_round(self, result: RoundResult, cpu: dict[str, float]) -> None:
        self.requests += result.requests
        self.errors += result.errors
        self.seconds += result.seconds
        self.p50_ms.append(result.p50_ms)
        self.p99_ms.append(result.p99_ms)
        if result.total_p50_ms is not None and result.total_p99_ms is not None:
            self.total_p50_ms.append(result.total_p50_ms)
            self.total_p99_ms.append(result.total_p99_ms)
        for name, seconds in cpu.items():
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + seconds

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def cpu_ms_per_request(self, names: Iterable[str]) -> float | None:
        """CPU milliseconds per request summed over the named processes (None if none watched)."""
        picked = [self.cpu_seconds[n] for n in names if n in self.cpu_seconds]
        if not picked or self.requests == 0:
            return None
        return sum(picked) * 1000.0 / self.requests


@dataclass(frozen=True)
class RoundResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    total_p50_ms: float | None = None
    total_p99_ms: float | None = None


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (what wrk reports too); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """Median of per-round figures: one noisy round does not move it much."""
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def parse_wrk_output(text: str) -> RoundResult:
    """Reads the one JSON line our Lua `done()` hook prints (see bench/wrk.py)."""
    for line in text.splitlines():
        if line.startswith(WRK_MARKER):
            data = json.loads(line[len(WRK_MARKER):])
            errors = sum(int(data[k]) for k in ("status", "connect", "read", "write", "timeout"))
            return RoundResult(
                requests=int(data["requests"]),
                errors=errors,
                seconds=int(data["duration_us"]) / 1e6,
                p50_ms=int(data["p50_us"]) / 1000.0,
                p99_ms=int(data["p99_us"]) / 1000.0,
            )
    raise ValueError("wrk output has no BENCH_JSON line: " + text[-500:])


@dataclass(frozen=True)
class Verdict:
    label: str
    value: float | None
    limit: float
    unit: str
    at_most: bool = True  # False: the value must be at least the limit

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def line(self) -> str:
        mark = {True: "PASS", False: "MISS", None: "n/a "}[self.passed]
        shown = "—" if self.value is None else f"{self.value:.3g} {self.unit}"
        sign = "≤" if self.at_most else "≥"
        return f"  [{mark}] {self.label}: {shown} (target {sign} {self.limit:g} {self.unit})"


def growth(samples: Sequence[tuple[float, float]], warmup_fraction: float = 0.25,
           warmup_seconds: float = 0.0) -> tuple[float, float]:
    """(MB grown, MB per minute) from (seconds, MB) samples, ignoring the warm-up part: the first
    `warmup_fraction` of the span, or the first `warmup_seconds` if that is longer.

    The slope is a least-squares fit, so one late spike does not read as a leak.
    """
    if len(samples) < 2:
        return 0.0, 0.0
    span = samples[-1][0] - samples[0][0]
    start_at = samples[0][0] + max(span * warmup_fraction, warmup_seconds)
    kept = [s for s in samples if s[0] >= start_at]
    if len(kept) < 2:
        kept = list(samples[-2:])
    n = len(kept)
    mean_t = sum(t for t, _ in kept) / n
    mean_m = sum(m for _, m in kept) / n
    var = sum((t - mean_t) ** 2 for t, _ in kept)
    slope = sum((t - mean_t) * (m - mean_m) for t, m in kept) / var if var else 0.0
    return kept[-1][1] - kept[0][1], slope * 60.0
