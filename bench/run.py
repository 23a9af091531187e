"""`make bench`: the gateway's speed and memory, each figure next to the direct and plain-Envoy runs.

Starts the demo provider, a plain Envoy pass-through to it and the full gateway, then measures
them in short interleaved rounds (round-robin, the order rotating each round) so machine noise
hits all three alike. Environment knobs: BENCH_QUICK=1 (about a minute), BENCH_ROUNDS,
BENCH_ROUND_SECONDS, BENCH_SOAK_SECONDS (default 180), BENCH_OPEN_STREAMS (default 1000),
BENCH_LARGE_SECONDS (default 10; quick 4): each phase of the small-beside-large-prompts run.
Everything runs on 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's `sidecar` and `bench`, whatever is installed

from bench import aioclient, large_prompts, payload  # noqa: E402
from bench.digest import digest_costs  # noqa: E402
from bench.input_scan import TARGET_MS, input_scan_ms  # noqa: E402
from bench.procstat import Watcher, cpu_delta  # noqa: E402
from bench.report import Scenario, rss_table, scenario_table, verdicts  # noqa: E402
from bench.stats import RoundResult, Sample, Verdict, growth  # noqa: E402
from bench.targets import Target, Targets, build_policies  # noqa: E402
from bench.wrk import WrkRunner, ensure_wrk  # noqa: E402
from sidecar.callout.handoff import DEFAULT_DECISION_TTL_SECONDS  # noqa: E402

T = TypeVar("T")
SCENARIOS = (Scenario(False, 1), Scenario(False, 16), Scenario(True, 1), Scenario(True, 16))
_MAX_PER_ROUND = 200_000  # the request bound of one round, far above what a round can reach
_SOAK_SLICE_SECONDS = 5.0
_SOAK_TOLERANCE_MB = 2.0
# A decision lives GATEWAY_DECISION_TTL_SECONDS (60 s by default) and its reservation marker one
# second longer: the marker table grows for that long under steady load, then levels off.
_SOAK_WARMUP_SECONDS = DEFAULT_DECISION_TTL_SECONDS + 5.0
_GUARDRAILS_BENCH = REPO / "bench" / "guardrails_bench.py"
_WEBHOOK_BENCH = REPO / "bench" / "webhook_latency.py"


@dataclass(frozen=True)
class Config:
    rounds: int
    round_seconds: float
    soak_seconds: float
    open_streams: int
    large_seconds: float

    @classmethod
    def from_env(cls) -> Config:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        return cls(
            rounds=int(os.environ.get("BENCH_ROUNDS", 1 if quick else 3)),
            round_seconds=float(os.environ.get("BENCH_ROUND_SECONDS", 2 if quick else 3)),
            soak_seconds=float(os.environ.get("BENCH_SOAK_SECONDS", 15 if quick else 180)),
            open_streams=int(os.environ.get("BENCH_OPEN_STREAMS", 1000)),
            large_seconds=float(os.environ.get("BENCH_LARGE_SECONDS", 4 if quick else 10)),
        )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class Bench:
    def __init__(self, config: Config, targets: Targets, workdir: Path, wrk: str | None) -> None:
        self.config = config
        self.targets = targets
        self.headers = payload.headers()
        self.body = payload.chat_body()
        self.stream_body = payload.chat_body(stream=True)
        self.wrk = WrkRunner(wrk, workdir, self.body, payload.DEMO_TOKEN) if wrk else None

    def load(self, target: Target, scenario: Scenario, seconds: float) -> RoundResult:
        if not scenario.streaming and self.wrk is not None:
            return self.wrk.run(target.url, scenario.connections, seconds)
        body = self.stream_body if scenario.streaming else self.body
        return run_async(aioclient.run_load(target.url, body, self.headers, scenario.connections, seconds,
                                            _MAX_PER_ROUND, scenario.streaming))

    def check_targets(self) -> None:
        """A few requests of each kind per target: every one must succeed before anything is timed."""
        for target in self.targets.all():
            for streaming in (False, True):
                body = self.stream_body if streaming else self.body
                result = run_async(aioclient.run_load(target.url, body, self.headers, 2, 10.0, 20, streaming))
                if result.errors or result.requests != 20:
                    raise RuntimeError(f"{target.name} ({'stream' if streaming else 'plain'}): "
                                       f"{result.requests} ok, {result.errors} failed during the check")

    def rounds(self) -> dict[tuple[str, str], Sample]:
        results: dict[tuple[str, str], Sample] = {}
        targets = self.targets.all()
        for index in range(self.config.rounds):
            print(f"  round {index + 1}/{self.config.rounds}", flush=True)
            for scenario in SCENARIOS:
                shift = index % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    watcher = Watcher(target.pids)
                    before = watcher.cpu()
                    result = self.load(target, scenario, self.config.round_seconds)
                    sample = results.setdefault((scenario.key, target.name), Sample())
                    sample.add_round(result, cpu_delta(before, watcher.cpu()))
        return results

    def open_streams(self) -> float | None:
        gateway = self.targets.all()[2]
        watcher = Watcher({k: v for k, v in gateway.pids.items() if k != "provider"})
        idle = watcher.rss_mb()
        count = self.config.open_streams
        # 300 words at 0.2 s each: a minute, much longer than the measurement needs.
        body = payload.slow_stream_body(300)
        held = run_async(aioclient.hold_streams(gateway.url, body, self.headers, count, 60.0, watcher.rss_mb))
        time.sleep(2.0)
        after = watcher.rss_mb()
        print(f"  {held.opened} of {count} streams open ({held.failed} failed {held.failures or ''}) "
              f"after {held.seconds_to_open:.1f}s")
        for name in watcher.roots:
            print(f"  {name:<8} RSS idle {idle[name]:6.1f} MB   with the streams open {held.measured[name]:6.1f} MB"
                  f"   2 s after closing {after[name]:6.1f} MB")
        return held.measured.get("sidecar") if held.opened >= count else None

    def soak(self) -> float | None:
        gateway = self.targets.all()[2]
        watcher = Watcher({k: v for k, v in gateway.pids.items() if k != "provider"})
        samples: list[tuple[float, dict[str, float]]] = []
        started = time.monotonic()
        slices = max(2, int(self.config.soak_seconds / _SOAK_SLICE_SECONDS))
        failures = 0
        for index in range(slices):
            # Alternate plain and streamed traffic so both paths are soaked.
            scenario = Scenario(index % 2 == 1, 16 if index % 2 == 0 else 8)
            failures += self.load(gateway, scenario, _SOAK_SLICE_SECONDS).errors
            samples.append((time.monotonic() - started, watcher.rss_mb()))
        print(f"  warm-up: the first {_SOAK_WARMUP_SECONDS:g} s or quarter, whichever is longer (the memory quota "
              "store keeps each reservation's marker for one decision lifetime, 61 s: its table fills that long, "
              "then stays level)")
        for name in watcher.roots:
            series = [(t, rss[name]) for t, rss in samples]
            grown, per_minute = growth(series, warmup_seconds=_SOAK_WARMUP_SECONDS)
            shown = " ".join(f"{mb:.1f}" for _, mb in series)
            print(f"  {name:<8} RSS MB every {_SOAK_SLICE_SECONDS:g}s: {shown}")
            print(f"  {name:<8} after warm-up: {grown:+.2f} MB, trend {per_minute:+.2f} MB/min")
        print(f"  soak errors: {failures}")
        return growth([(t, rss["sidecar"]) for t, rss in samples], warmup_seconds=_SOAK_WARMUP_SECONDS)[0]


    def beside_large_prompts(self) -> None:
        gateway = self.targets.all()[2]
        result = run_async(large_prompts.measure(gateway.url, self.headers, self.config.large_seconds))
        alone, beside = result.alone, result.beside
        print(f"  small 1 KB requests alone:          p50 {alone.p50_ms:7.1f} ms  p99 {alone.p99_ms:7.1f} ms"
              f"  ({alone.requests} ok, {alone.errors} failed)")
        print(f"  beside 4 clients of 4 MB prompts:   p50 {beside.p50_ms:7.1f} ms  p99 {beside.p99_ms:7.1f} ms"
              f"  ({beside.requests} ok, {beside.errors} failed)")
        print(f"  large prompts answered: {result.large_done} by status {result.large_statuses}")


def digest() -> None:
    for label, (digest_us, total_us) in digest_costs().items():
        print(f"  {label} body: SHA-256 {digest_us:.1f} µs; digest + sign + decode + verify {total_us:.1f} µs "
              "(best of 5; the callout and the forwarding path each hash the body once)")


def guardrails_bench(script: Path = _GUARDRAILS_BENCH) -> None:
    if not script.exists():
        print(f"  n/a: bench/{script.name} is not here (its branch is not merged)")
        return
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        result = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        print(f"  {script.name} did not finish within 300 s")
        return
    print("\n".join("  " + line for line in (result.stdout + result.stderr).rstrip().splitlines()))


def input_scan() -> None:
    figures = input_scan_ms()
    if figures is None:
        print("  n/a: this sidecar has no guardrails")
        return
    verdict = Verdict("whole input scan of a 1 MB prompt (PII + injection)", figures["total"], TARGET_MS, "ms")
    print(f"  walker + normalised view {figures.get('walk', 0.0):.1f} ms + PII {figures['pii']:.1f} ms"
          f" + injection heuristic {figures['injection']:.1f} ms (median of 3)")
    print(verdict.line())


def main() -> int:
    # The processes run `python -m sidecar`, which imports from the working directory first.
    os.chdir(REPO)
    config = Config.from_env()
    begun = time.monotonic()
    print(f"make bench: {config.rounds} round(s) of {config.round_seconds:g}s per cell, "
          f"soak {config.soak_seconds:g}s, {config.open_streams} open streams; {os.cpu_count()} CPU(s)")
    wrk = ensure_wrk()
    print(f"load: {'wrk (non-streaming)' if wrk else 'asyncio client (wrk unavailable)'}; "
          "asyncio aiohttp client for streams; 1 KB chat request, demo token")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    policies = build_policies(workdir / "policies")
    print("policy features: " + ", ".join(f"{k} {v}" for k, v in policies.features.items()))
    for line in policies.skipped:
        print(f"  left out {line}")
    for name in policies.included:
        print(f"  included bench/policies/{name}")
    workers = os.environ.get("GATEWAY_SIDECAR_WORKERS", "1")
    print(f"sidecar workers: {workers}; logs in {workdir}/processes.log")
    targets = Targets.start(workdir, policies.folder)
    try:
        bench = Bench(config, targets, workdir, wrk)
        try:
            bench.check_targets()
        except RuntimeError as exc:
            print(f"\nbench: a target does not answer as it should, nothing was timed: {exc}\n"
                  f"see {workdir}/processes.log", file=sys.stderr)
            return 1
        print("\n== interleaved rounds", flush=True)
        results = bench.rounds()
        rss = {t.name: Watcher(t.pids).rss_mb() for t in targets.all()}
        for scenario in SCENARIOS:
            print()
            print("\n".join(scenario_table(scenario, results)))
        print()
        print("\n".join(rss_table(rss)))
        print(f"\n== {config.open_streams} open streams through the gateway", flush=True)
        open_rss = bench.open_streams()
        print(f"\n== soak: {config.soak_seconds:g}s of mixed load through the gateway", flush=True)
        soak_growth = bench.soak()
        print(f"\n== small requests while large prompts are in flight ({config.large_seconds:g}s each)", flush=True)
        bench.beside_large_prompts()
    finally:
        targets.stop()
    print("\n== guardrail scan (bench/guardrails_bench.py)", flush=True)
    guardrails_bench()
    print("\n== callout latency added by a webhook guardrail, local detector (bench/webhook_latency.py)", flush=True)
    guardrails_bench(_WEBHOOK_BENCH)
    print("\n== the callout's input scan of a 1 MB prompt", flush=True)
    input_scan()
    print("\n== what binding the decision to the body costs", flush=True)
    digest()
    print("\n== targets (reported, never asserted)")
    for verdict in verdicts(results, config.open_streams, open_rss, soak_growth, _SOAK_TOLERANCE_MB):
        print(verdict.line())
    print(f"\nbench finished in {time.monotonic() - begun:.0f}s; features: "
          + ", ".join(f"{k} {v}" for k, v in policies.features.items()) + f"; sidecar workers {workers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
