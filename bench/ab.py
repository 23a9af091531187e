"""Before/after for a sidecar change: two gateways, one per checkout, measured in interleaved rounds.

    git archive main | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    python bench/ab.py /tmp/base .            # A = main, B = this checkout

Both gateways share one demo provider; each round runs wrk against A then B (the order
alternating), so noise on a busy machine hits both alike. Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import aioclient, payload  # noqa: E402
from bench.procstat import Watcher, cpu_delta  # noqa: E402
from bench.stats import Sample, median  # noqa: E402
from bench.targets import CHAT_PATH, build_policies  # noqa: E402
from bench.wrk import WrkRunner, ensure_wrk  # noqa: E402
from sidecar.devtools.launcher import Stack, free_port  # noqa: E402
from sidecar.settings import Settings  # noqa: E402


def _stack(checkout: Path, workdir: Path, policies: Path, provider_port: int, with_provider: bool,
           env: dict[str, str], unix_socket: bool) -> Stack:
    workdir.mkdir(parents=True, exist_ok=True)
    # The Envoy config is rendered by this checkout's code for both sides: `--tcp` chooses the hop.
    settings = Settings(listen_port=free_port(), sidecar_port=free_port(), admin_port=free_port(),
                        demo_provider_port=provider_port, status_port=free_port(), metrics_port=free_port(),
                        policies_dir=policies, drain_seconds=1,
                        sidecar_socket=str(workdir.resolve() / "sidecar.sock") if unix_socket else "")
    stack = Stack(settings, workdir.resolve(), with_demo_provider=with_provider, log=(workdir / "log").open("wb"),
                  extra_env={"PYTHONPATH": str(checkout.resolve()), **env})
    stack.start()
    return stack


def _print_open_streams(name: str, stack: Stack, count: int) -> None:
    watcher = Watcher({"sidecar": stack.processes["sidecar"].pid})
    idle = watcher.rss_mb()["sidecar"]
    held = asyncio.run(aioclient.hold_streams(stack.base_url + CHAT_PATH, payload.slow_stream_body(300),
                                              payload.headers(), count, 60.0, watcher.rss_mb))
    print(f"{name}: sidecar RSS idle {idle:.1f} MB, with {held.opened}/{count} streams open "
          f"{held.measured['sidecar']:.1f} MB ({held.failed} failed: {held.failures})")


def _env_pairs(values: list[str]) -> dict[str, str]:
    return dict(v.split("=", 1) for v in values)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--policies", type=Path, help="policy folder for both (default: the bench's)")
    parser.add_argument("--b-policies", type=Path, help="a different policy folder for B (feature cost)")
    parser.add_argument("--stream", action="store_true", help="streamed requests (asyncio client), not wrk")
    parser.add_argument("--open-streams", type=int, default=0, help="instead: sidecar RSS with N open streams")
    parser.add_argument("--a-env", action="append", default=[], help="VAR=VALUE for A's processes")
    parser.add_argument("--b-env", action="append", default=[], help="VAR=VALUE for B's processes")
    parser.add_argument("--tcp", choices=("a", "b", "both"), help="Envoy reaches that side's sidecar over "
                        "loopback TCP (default: the Unix socket, as `make bench`; a checkout without "
                        "GATEWAY_SIDECAR_SOCKET support needs --tcp)")
    args = parser.parse_args()
    wrk = ensure_wrk()
    if wrk is None:
        return 1
    checkouts = {"A": args.a.resolve(), "B": args.b.resolve()}
    b_policies = args.b_policies.resolve() if args.b_policies else None
    if args.policies:
        args.policies = args.policies.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-ab-"))
    # `python -m sidecar` puts the working directory first on sys.path: it must not hold a
    # checkout, or both gateways would run that one instead of their PYTHONPATH's.
    os.chdir(workdir)
    policies = args.policies.resolve() if args.policies else build_policies(workdir / "policies").folder
    provider_port = free_port()
    stacks: dict[str, Stack] = {}
    try:
        stacks["A"] = _stack(checkouts["A"], workdir / "a", policies, provider_port, True, _env_pairs(args.a_env),
                             args.tcp not in ("a", "both"))
        stacks["B"] = _stack(checkouts["B"], workdir / "b", b_policies or policies, provider_port, False,
                             _env_pairs(args.b_env), args.tcp not in ("b", "both"))
        if args.open_streams:
            for name in ("A", "B"):
                _print_open_streams(name, stacks[name], args.open_streams)
            return 0
        runner = WrkRunner(wrk, workdir, payload.chat_body(), payload.DEMO_TOKEN)
        stream_body = payload.chat_body(stream=True)
        results: dict[tuple[str, int], Sample] = {}
        for index in range(args.rounds):
            for connections in (1, 16):
                for name in ("AB" if index % 2 == 0 else "BA"):
                    stack = stacks[name]
                    watcher = Watcher({"envoy": stack.processes["envoy"].pid,
                                       "sidecar": stack.processes["sidecar"].pid})
                    before = watcher.cpu()
                    url = stack.base_url + CHAT_PATH
                    result = (asyncio.run(aioclient.run_load(url, stream_body, payload.headers(), connections,
                                                             args.seconds, 1_000_000, True))
                              if args.stream else runner.run(url, connections, args.seconds))
                    sample = results.setdefault((name, connections), Sample())
                    sample.add_round(result, cpu_delta(before, watcher.cpu()))
        print(f"{'':14}{'RPS':>8}{'p50 ms':>8}{'p99 ms':>8}{'sidecar ms/req':>16}{'envoy ms/req':>14}{'errors':>8}")
        for (name, connections), s in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            print(f"{name} c={connections:<10}{s.rps:8.0f}{median(s.p50_ms):8.2f}{median(s.p99_ms):8.2f}"
                  f"{s.cpu_ms_per_request(['sidecar']) or 0:16.3f}{s.cpu_ms_per_request(['envoy']) or 0:14.3f}"
                  f"{s.errors:8d}")
    finally:
        for stack in stacks.values():
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
