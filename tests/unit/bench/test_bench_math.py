"""The benchmark's arithmetic and parsing (nothing here times anything)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.payload import BODY_BYTES, chat_body
from bench.procstat import parse_cpu_seconds, parse_rss_mb, stat_tail
from bench.report import Scenario, scenario_table, verdicts
from bench.stats import RoundResult, Sample, Verdict, growth, median, parse_wrk_output, percentile, ratio
from bench.wrk import lua_script

WRK_OUT = """Running 2s test @ http://127.0.0.1:1/x
  1 threads and 16 connections
BENCH_JSON {"requests":2400,"duration_us":2000000,"p50_us":1500,"p99_us":9000,"status":3,"connect":0,"read":1,"write":0,"timeout":0}
"""


def test_wrk_json_line_is_parsed() -> None:
    assert parse_wrk_output(WRK_OUT) == RoundResult(requests=2400, errors=4, seconds=2.0, p50_ms=1.5, p99_ms=9.0)


def test_wrk_output_without_the_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="BENCH_JSON"):
        parse_wrk_output("Running 2s test\n")


def test_lua_script_quotes_the_body_path_and_sets_the_token() -> None:
    script = lua_script(Path('/tmp/a "b".json'), "cgt_x")
    assert 'io.open("/tmp/a \\"b\\".json", "rb")' in script
    assert 'wrk.headers["Authorization"] = "Bearer cgt_x"' in script
    assert "BENCH_JSON" in script


def test_percentile_median_ratio() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert percentile([], 50) == 0.0
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None


def test_sample_merges_rounds_and_divides_cpu_by_requests() -> None:
    sample = Sample()
    sample.add_round(RoundResult(1000, 0, 2.0, 1.0, 4.0), {"envoy": 0.1, "sidecar": 0.3})
    sample.add_round(RoundResult(3000, 2, 2.0, 3.0, 6.0), {"envoy": 0.1, "sidecar": 0.5})
    assert sample.rps == 1000.0
    assert sample.errors == 2
    assert sample.cpu_ms_per_request(["envoy", "sidecar"]) == pytest.approx(0.25)
    assert sample.cpu_ms_per_request(["provider"]) is None


def _results(gateway_rps: float, envoy_rps: float) -> dict[tuple[str, str], Sample]:
    out = {}
    for target, rps, p50 in (("direct", envoy_rps * 2, 0.2), ("envoy", envoy_rps, 0.5), ("gateway", gateway_rps, 1.2)):
        for scenario in (Scenario(False, 1), Scenario(False, 16), Scenario(True, 1), Scenario(True, 16)):
            s = Sample()
            cpu = {"envoy": 0.3, "sidecar": 0.4} if not scenario.streaming else {"envoy": 0.5, "sidecar": 1.0}
            s.add_round(RoundResult(int(rps * 2), 0, 2.0, p50, p50 * 3), cpu)
            out[(scenario.key, target)] = s
    return out


def test_verdicts_compare_the_gateway_with_plain_envoy() -> None:
    lines = {v.label.split(" (")[0]: v for v in verdicts(_results(500.0, 1000.0), 1000, 80.0, 0.5, 2.0)}
    assert lines["gateway RPS as a share of plain Envoy's at c=16"].value == pytest.approx(50.0)
    assert lines["gateway RPS as a share of plain Envoy's at c=16"].passed is True
    assert lines["added p50 at c=1"].value == pytest.approx(0.7)
    cpu = lines["envoy+sidecar CPU per non-streaming request"]
    assert cpu.value == pytest.approx(0.7) and cpu.passed is False  # 0.7 s over 1000 requests: over 0.6 ms
    stream = lines["envoy+sidecar CPU per stream"]
    assert stream.value == pytest.approx(1.5) and stream.passed is True  # under 2.5 ms less a third
    assert lines["sidecar RSS with 1,000 open streams"].passed is True


def test_verdict_lines_say_pass_miss_or_na() -> None:
    assert Verdict("x", 0.4, 0.5, "ms").line().startswith("  [PASS]")
    assert Verdict("share", 30.0, 40.0, "%", at_most=False).line().startswith("  [MISS]")
    assert Verdict("x", None, 1.0, "ms").line().startswith("  [n/a ]")


def test_table_shows_ratios() -> None:
    table = scenario_table(Scenario(False, 16), _results(500.0, 1000.0))
    rps = next(line for line in table if line.strip().startswith("RPS"))
    assert rps.split()[1:] == ["2000", "1000", "500", "0.25", "0.50", "0.50"]


def test_growth_ignores_warm_up_and_fits_a_slope() -> None:
    flat = [(float(t), 50.0 + (5.0 if t == 0 else 0.0)) for t in range(0, 120, 10)]
    assert growth(flat) == (0.0, 0.0)
    leaking = [(float(t), 50.0 + t / 60.0) for t in range(0, 120, 10)]
    grown, per_minute = growth(leaking)
    assert per_minute == pytest.approx(1.0)
    assert grown == pytest.approx(80.0 / 60.0)


def test_proc_parsers() -> None:
    line = "4242 (python -m (x)) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 99 1000 10\n"
    tail = stat_tail(line)
    assert tail[0] == "S" and tail[1] == "1"  # state, then the parent pid
    assert parse_cpu_seconds(tail) == pytest.approx(3.0)  # (250 + 50) ticks at 100 Hz
    assert parse_rss_mb("Name:\tx\nVmRSS:\t  10240 kB\n") == 10.0


def test_bench_body_is_one_kilobyte() -> None:
    assert len(chat_body()) == BODY_BYTES
    assert len(chat_body(stream=True)) == BODY_BYTES


def test_growth_can_skip_a_warm_up_of_fixed_length() -> None:
    # A table that fills for 60 s and then stays level is no leak once the warm-up covers its fill.
    filling = [(float(t), 100.0 + min(t, 60) * 0.05) for t in range(0, 185, 5)]
    assert growth(filling)[0] > 0  # the first quarter (45 s) alone does not cover the fill
    assert growth(filling, warmup_seconds=65.0) == (0.0, 0.0)
