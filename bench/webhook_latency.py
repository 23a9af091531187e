"""The callout latency a webhook guardrail adds, with a local detector: `python bench/webhook_latency.py`.

Starts the example detector (sidecar.devtools.example_detector) as its own process and two
sidecars in this process (on 127.0.0.1, free ports): one whose policy has no guardrail, one with
a `type: webhook` guardrail. It then POSTs the bench's 1 KB chat request to each callout endpoint
in interleaved rounds (sequentially, then 8 at a time) and prints the medians and p95s and the
difference. Bounded: BENCH_WEBHOOK_REQUESTS per sidecar and concurrency (default 400), in rounds
of 50. Informational only; no test asserts on it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import payload  # noqa: E402
from bench.stats import median, percentile  # noqa: E402
from sidecar.app import init_app  # noqa: E402
from sidecar.callout.endpoint import AUTHZ_PREFIX  # noqa: E402
from sidecar.core.endpoints import CHAT_PATH  # noqa: E402
from sidecar.devtools.launcher import free_port  # noqa: E402
from sidecar.settings import Settings  # noqa: E402

ROUND = 50
CONCURRENCY = (1, 8)


def policies(folder: Path, detector_url: str | None) -> Path:
    folder.mkdir(parents=True)
    for name in ("models.yaml", "tokens.yaml"):
        (folder / name).write_text((REPO / "policies" / name).read_text())
    if detector_url:
        (folder / "guardrails.yaml").write_text(
            f"guardrails:\n  detector: {{type: webhook, url: '{detector_url}/check', action: block}}\n")
    return folder


async def serve(folder: Path) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(init_app(Settings(policies_dir=folder, policy_poll_seconds=0)), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}{AUTHZ_PREFIX}{CHAT_PATH}"


async def timed(session: aiohttp.ClientSession, url: str, count: int, concurrency: int) -> list[float]:
    body, headers = payload.chat_body(), payload.headers()
    seconds: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"callout answered {response.status}")
        seconds.append(time.perf_counter() - started)

    for _ in range(0, count, concurrency):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return seconds


async def measure(requests: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    port = free_port()
    detector = subprocess.Popen([sys.executable, "-m", "sidecar.devtools.example_detector", "--port", str(port)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    runners = []
    try:
        await _wait_detector(port)
        plain, plain_url = await serve(policies(workdir / "plain", None))
        hooked, hooked_url = await serve(policies(workdir / "webhook", f"http://127.0.0.1:{port}"))
        runners = [plain, hooked]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for concurrency in CONCURRENCY:
                await timed(session, plain_url, ROUND, concurrency)  # warm-up: connections, first imports
                await timed(session, hooked_url, ROUND, concurrency)
                times: dict[str, list[float]] = {"no guardrail": [], "webhook": []}
                for _ in range(max(1, requests // ROUND)):
                    times["no guardrail"] += await timed(session, plain_url, ROUND, concurrency)
                    times["webhook"] += await timed(session, hooked_url, ROUND, concurrency)
                report(concurrency, times)
    finally:
        for runner in runners:
            await runner.cleanup()
        detector.terminate()
        detector.wait(10)


async def _wait_detector(port: int) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.post(f"http://127.0.0.1:{port}/check",
                                        json={"version": "cgt.guardrail.v1", "texts": []}) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the example detector did not start")


def report(concurrency: int, times: dict[str, list[float]]) -> None:
    base, hooked = times["no guardrail"], times["webhook"]
    print(f"  concurrency {concurrency}, {len(base)} callouts each (1 KB chat request):")
    for name, values in times.items():
        print(f"    {name:<13} median {median(values) * 1000:6.2f} ms   p95 {percentile(values, 95) * 1000:6.2f} ms")
    print(f"    added by the webhook: median {(median(hooked) - median(base)) * 1000:+.2f} ms, "
          f"p95 {(percentile(hooked, 95) - percentile(base, 95)) * 1000:+.2f} ms")


def main() -> int:
    requests = int(os.environ.get("BENCH_WEBHOOK_REQUESTS", 400))
    try:
        import uvloop
        uvloop.run(measure(requests))
    except ImportError:
        asyncio.run(measure(requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
