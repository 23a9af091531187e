"""Prints the benchmark's tables and its target verdicts (PASS/MISS, never an assertion)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bench.stats import Sample, Verdict, median, ratio

TARGET_NAMES = ("direct", "envoy", "gateway")
_GATEWAY_PROCS = ("envoy", "sidecar")
_COLUMNS = f"{'direct':>10}{'envoy':>10}{'gateway':>10}{'gw/direct':>11}{'gw/envoy':>10}"


@dataclass(frozen=True)
class Scenario:
    streaming: bool
    connections: int

    @property
    def key(self) -> str:
        return f"{'streaming' if self.streaming else 'non-streaming'} c={self.connections}"


Results = Mapping[tuple[str, str], Sample]  # (scenario key, target name) -> merged sample
Row = tuple[str, Callable[[Sample], float | None], str]


def _fmt(value: float | None, digits: str = ".2f") -> str:
    return "—" if value is None else format(value, digits)


def _rows(scenario: Scenario) -> list[Row]:
    first = "TTFB" if scenario.streaming else "latency"
    rows: list[Row] = [
        ("RPS" if not scenario.streaming else "streams/s", lambda s: s.rps, ".0f"),
        (f"{first} p50 ms", lambda s: median(s.p50_ms), ".2f"),
        (f"{first} p99 ms", lambda s: median(s.p99_ms), ".2f"),
    ]
    if scenario.streaming:
        rows += [("stream p50 ms", lambda s: median(s.total_p50_ms), ".2f"),
                 ("stream p99 ms", lambda s: median(s.total_p99_ms), ".2f")]
    rows += [
        ("CPU ms/req envoy", lambda s: s.cpu_ms_per_request(["envoy"]), ".3f"),
        ("CPU ms/req sidecar", lambda s: s.cpu_ms_per_request(["sidecar"]), ".3f"),
        ("CPU ms/req envoy+sidecar", lambda s: s.cpu_ms_per_request(_GATEWAY_PROCS), ".3f"),
        ("CPU ms/req provider", lambda s: s.cpu_ms_per_request(["provider"]), ".3f"),
        ("errors", lambda s: float(s.errors), ".0f"),
    ]
    return rows


def scenario_table(scenario: Scenario, results: Results) -> list[str]:
    head = f"{scenario.key:<26}" + _COLUMNS + f"{'envoy/dir':>11}"
    lines = [head, "-" * len(head)]
    for label, getter, digits in _rows(scenario):
        values = {t: getter(results[(scenario.key, t)]) if (scenario.key, t) in results else None
                  for t in TARGET_NAMES}
        ratios = "" if label == "errors" else (
            f"{_fmt(ratio(values['gateway'], values['direct'])):>11}"
            f"{_fmt(ratio(values['gateway'], values['envoy'])):>10}"
            f"{_fmt(ratio(values['envoy'], values['direct'])):>11}")
        lines.append(f"  {label:<24}" + "".join(f"{_fmt(values[t], digits):>10}" for t in TARGET_NAMES) + ratios)
    return lines


def rss_table(rss: Mapping[str, Mapping[str, float]]) -> list[str]:
    """RSS (MB) per target and process after the main rounds; ratios over the processes' sum."""
    lines = [f"{'RSS MB after the rounds':<26}" + _COLUMNS]
    lines.append("-" * len(lines[0]))
    for proc in ("envoy", "sidecar", "provider"):
        values = [rss.get(t, {}).get(proc) for t in TARGET_NAMES]
        lines.append(f"  {proc:<24}" + "".join(f"{_fmt(v, '.1f'):>10}" for v in values))
    totals = {t: sum(v for p, v in rss.get(t, {}).items() if p != "provider") or None for t in TARGET_NAMES}
    lines.append(f"  {'total (no provider)':<24}" + "".join(f"{_fmt(totals[t], '.1f'):>10}" for t in TARGET_NAMES)
                 + f"{_fmt(ratio(totals['gateway'], totals['direct'])):>11}"
                 + f"{_fmt(ratio(totals['gateway'], totals['envoy'])):>10}")
    return lines


def _get(results: Results, scenario: Scenario, target: str) -> Sample | None:
    return results.get((scenario.key, target))


def _added(results: Results, scenario: Scenario, pick: Callable[[Sample], float]) -> float | None:
    gateway, envoy = _get(results, scenario, "gateway"), _get(results, scenario, "envoy")
    if gateway is None or envoy is None:
        return None
    return pick(gateway) - pick(envoy)


def _best_cpu(results: Results, *scenarios: Scenario) -> float | None:
    """Envoy + sidecar CPU ms per request (stream), the lowest over `scenarios` (None if unmeasured)."""
    values = [sample.cpu_ms_per_request(_GATEWAY_PROCS) for scenario in scenarios
              if (sample := _get(results, scenario, "gateway")) is not None]
    return min((value for value in values if value is not None), default=None)


def verdicts(results: Results, open_streams: int, open_streams_rss: float | None, soak_growth_mb: float | None,
             soak_tolerance_mb: float) -> list[Verdict]:
    c1, c16 = Scenario(False, 1), Scenario(False, 16)
    s1, s16 = Scenario(True, 1), Scenario(True, 16)
    cpu = _best_cpu(results, c1, c16)
    gw16, env16 = _get(results, c16, "gateway"), _get(results, c16, "envoy")
    rps_share = ratio(gw16.rps, env16.rps) if gw16 and env16 else None
    return [
        Verdict("envoy+sidecar CPU per non-streaming request (best of c=1, c=16; issue 18's bar, goal 0.5 ms)",
                cpu, 0.6, "ms"),
        Verdict("envoy+sidecar CPU per stream (best of c=1, c=16; issue 18: a third below 2.5 ms)",
                _best_cpu(results, s1, s16), 2.5 * 2 / 3, "ms"),
        Verdict("gateway RPS as a share of plain Envoy's at c=16", None if rps_share is None else rps_share * 100,
                40, "%", at_most=False),
        Verdict("added p50 at c=1 (gateway − plain Envoy)", _added(results, c1, lambda s: median(s.p50_ms)), 1, "ms"),
        Verdict("added streaming TTFB p50 at c=1 (gateway − plain Envoy)",
                _added(results, s1, lambda s: median(s.p50_ms)), 2, "ms"),
        Verdict(f"sidecar RSS with {open_streams:,} open streams", open_streams_rss, 100, "MB"),
        Verdict("sidecar RSS growth over the soak (after warm-up)", soak_growth_mb, soak_tolerance_mb, "MB"),
    ]
