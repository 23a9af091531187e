"""Where the sidecar's time goes under load: py-spy samples it while wrk drives the gateway.

Not part of `make bench`. py-spy is not a project dependency: install it in a throwaway venv
(`python3 -m venv /tmp/prof && /tmp/prof/bin/pip install py-spy`) and pass its path:

    python bench/profile_sidecar.py --py-spy /tmp/prof/bin/py-spy [--seconds 15] [--stream]

Prints the functions with the most samples, by own time and by time including callees. Note
that py-spy counts a process that is runnable but not running as busy: on a loaded machine,
samples at a socket `send` are mostly the sidecar waiting for a core after waking its peer,
so read the Python-side shares and /proc CPU (`make bench`) together.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import aioclient, payload  # noqa: E402
from bench.targets import Targets, build_policies  # noqa: E402
from bench.wrk import WrkRunner, ensure_wrk  # noqa: E402


def summarize(collapsed: str, top: int) -> list[str]:
    """Own and inclusive sample counts per function from py-spy's collapsed ("raw") stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    for title, counter in (("own time", own), ("including callees", inclusive)):
        lines.append(f"-- top {top} by {title}")
        lines += [f"{100.0 * n / max(total, 1):5.1f}%  {frame}" for frame, n in counter.most_common(top)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--py-spy", required=True)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", default="")
    parser.add_argument("--stream", action="store_true", help="streamed requests (asyncio client) instead of wrk")
    args = parser.parse_args()
    os.chdir(REPO)  # `python -m sidecar` imports from the working directory first
    wrk = ensure_wrk()
    if wrk is None:
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    targets = Targets.start(workdir, build_policies(workdir / "policies").folder)
    try:
        gateway = targets.all()[2]
        runner = WrkRunner(wrk, workdir, payload.chat_body(), payload.DEMO_TOKEN)
        out = Path(args.out) if args.out else workdir / "sidecar.collapsed"
        if args.stream:
            load = threading.Thread(target=asyncio.run, args=(aioclient.run_load(
                gateway.url, payload.chat_body(stream=True), payload.headers(), args.connections, args.seconds + 2,
                1_000_000, True),))
        else:
            load = threading.Thread(target=runner.run, args=(gateway.url, args.connections, args.seconds + 2))
        load.start()
        subprocess.run([args.py_spy, "record", "--format", "raw", "--nonblocking", "-r", "200",
                        "-d", str(args.seconds), "-o", str(out), "-p", str(gateway.pids["sidecar"])],
                       check=True, capture_output=True, timeout=args.seconds + 60)
        load.join()
        print("\n".join(summarize(out.read_text(), args.top)))
        print(f"collapsed stacks: {out}")
    finally:
        targets.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
