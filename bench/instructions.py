"""Instructions per request of a sidecar, counted by valgrind's callgrind: a before/after that noise cannot move.

    python bench/instructions.py /tmp/base . [--stream] [--n 300] [CHECKOUT:POLICY_DIR …]

CPU seconds per request (`make bench`, `bench/ab.py`) move by 5-30 % between identical runs on a
busy 2-core machine; callgrind counts the user-space instructions the sidecar executes, and the
same checkout counted twice differs by about 0.2 %. Each checkout's sidecar runs under callgrind
(instrumentation switched on only after start-up and a warm-up), a client process drives it the
way Envoy does (the callout, then the forward with the decision header; `--stream` reads whole
SSE streams), and the demo provider answers. Kernel time (system calls) is not counted: a
change that only saves writes shows in `make bench`, not here. Not part of `make bench`; needs
valgrind (Debian's package). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import payload  # noqa: E402
from bench.targets import build_policies  # noqa: E402
from sidecar.devtools.launcher import free_port, wait_http  # noqa: E402

_CLIENT = r'''
import asyncio, sys, aiohttp
url, n, conc, body, auth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4], "rb").read(), sys.argv[5]
PATH = "/api/client/v1/chat/completions"

async def main():
    errors, left = 0, [n]
    async with aiohttp.ClientSession() as session:
        async def worker():
            nonlocal errors
            while left[0] > 0:
                left[0] -= 1
                headers = {"Authorization": auth, "Content-Type": "application/json"}
                async with session.post(url + "/authz" + PATH, data=body, headers=headers) as decided:
                    await decided.read()
                    if decided.status != 200:
                        errors += 1
                        continue
                    routed = {"x-cgt-decision": decided.headers["x-cgt-decision"],
                              "X-Request-Id": decided.headers["X-Request-Id"], "Content-Type": "application/json"}
                async with session.post(url + PATH, data=body, headers=routed) as answer:
                    await answer.read()
                    errors += answer.status != 200
        await asyncio.gather(*(worker() for _ in range(conc)))
    print(errors)

asyncio.run(main())
'''


def count(checkout: str, policies: Path, workdir: Path, provider_port: int, requests: int, connections: int,
          body: Path) -> tuple[float, str]:
    """(instructions per request, client errors) of one checkout's sidecar."""
    port = free_port()
    out = workdir / f"callgrind.{port}"
    env = {**os.environ, "PYTHONPATH": str(Path(checkout).resolve()), "GATEWAY_SIDECAR_PORT": str(port),
           "GATEWAY_POLICIES": str(policies), "GATEWAY_STATUS_PORT": str(free_port()),
           "GATEWAY_STATE_DIR": str(workdir / f"state.{port}"),
           "GATEWAY_DEMO_PROVIDER_URL": f"http://127.0.0.1:{provider_port}/v1"}
    with (workdir / f"sidecar.{port}.log").open("wb") as log:
        # cwd: `python -m sidecar` imports from the working directory before PYTHONPATH.
        sidecar = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                    f"--callgrind-out-file={out}", sys.executable, "-m", "sidecar", "serve"],
                                   env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/readyz", timeout=240, process=sidecar)

            def client(count: int) -> list[str]:
                return [sys.executable, str(workdir / "client.py"), url, str(count), str(connections), str(body),
                        f"Bearer {payload.DEMO_TOKEN}"]

            subprocess.run(client(50), check=True, capture_output=True, timeout=600)  # warm-up, not counted
            control = ["callgrind_control"]
            subprocess.run([*control, "-i", "on", str(sidecar.pid)], check=True, capture_output=True)
            driven = subprocess.run(client(requests), capture_output=True, text=True, timeout=1200)
            subprocess.run([*control, "-i", "off", str(sidecar.pid)], check=True, capture_output=True)
            subprocess.run([*control, "-d", str(sidecar.pid)], check=True, capture_output=True)
        finally:
            sidecar.kill()
            sidecar.wait(60)
    total = 0
    for path in glob.glob(f"{out}*"):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total / requests, driven.stdout.strip() or driven.stderr[-300:]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkouts", nargs="+", help="CHECKOUT or CHECKOUT:POLICY_DIR (default: the bench's policies)")
    parser.add_argument("--n", type=int, default=300, help="requests counted per checkout")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--stream", action="store_true", help="streamed requests")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-instructions-"))
    policies = workdir / "policies"
    build_policies(policies)
    body = workdir / "body.json"
    body.write_bytes(payload.chat_body(stream=args.stream))
    (workdir / "client.py").write_text(_CLIENT)
    provider_port = free_port()
    provider = subprocess.Popen([sys.executable, "-m", "sidecar", "demo-provider", "--port", str(provider_port)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{provider_port}/_requests", timeout=30, process=provider)
        kind = "stream" if args.stream else "request"
        for spec in args.checkouts:
            checkout, _, own = spec.partition(":")
            per, errors = count(checkout, Path(own) if own else policies, workdir, provider_port, args.n,
                                args.connections, body)
            print(f"{spec:40s} {per / 1e6:7.3f} M instructions per {kind}   client errors: {errors}", flush=True)
    finally:
        provider.terminate()
        provider.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
