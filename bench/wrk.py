"""Non-streaming load with wrk (Debian's package), POST bodies set by a generated Lua script.

The Lua `done()` hook prints one JSON line with the counts and latency percentiles, which
`bench.stats.parse_wrk_output` reads, so no human-oriented output is scraped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.stats import RoundResult, parse_wrk_output

_LUA = """\
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
{auth_line}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def lua_script(body_path: Path, token: str | None) -> str:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    return _LUA.format(body_path=_lua_string(str(body_path)), auth_line=auth)


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_wrk() -> str | None:
    return shutil.which("wrk")


def ensure_wrk() -> str | None:
    """wrk, installed from Debian if missing; None (with the reason printed) if that fails."""
    found = find_wrk()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        print("bench: wrk is not installed and apt-get is unavailable; using the asyncio client instead")
        return None
    print("bench: wrk missing, installing it: apt-get install -y wrk", flush=True)
    try:
        result = subprocess.run([apt, "install", "-y", "wrk"], capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"bench: could not install wrk ({exc}); using the asyncio client instead")
        return None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
        print(f"bench: `apt-get install -y wrk` failed ({tail[0]}); using the asyncio client instead "
              "(run it as root, or install wrk, for wrk figures)")
        return None
    return find_wrk()


class WrkRunner:
    def __init__(self, binary: str, workdir: Path, body: bytes, token: str | None) -> None:
        self.binary = binary
        body_path = workdir / "bench-body.json"
        body_path.write_bytes(body)
        self.script = workdir / "bench-post.lua"
        self.script.write_text(lua_script(body_path, token), encoding="utf-8")

    def run(self, url: str, connections: int, seconds: float) -> RoundResult:
        # One wrk thread: on a small machine a second one would steal a core from what is measured.
        cmd = [self.binary, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(self.script), url]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        if result.returncode != 0:
            raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr[-500:]}")
        return parse_wrk_output(result.stdout)
