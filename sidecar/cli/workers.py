"""Several sidecar worker processes sharing one port (SO_REUSEPORT), when cores allow.

`GATEWAY_SIDECAR_WORKERS=N` (default 1): the process Envoy's launcher started serves as worker
0 and starts N-1 more `python -m sidecar serve` processes; the kernel spreads Envoy's
connections over all of them. This works because the callout hands its decision to the
forwarding path in a signed header, so any worker can forward what any other decided: all
workers sign with one key, the parent's (GATEWAY_DECISION_KEY, or the one it made), which the
parent writes to each child's stdin (not its environment, which other local users' tools can
read). A child that gets no valid key refuses to start and says why. State that must be exact across requests
(quotas) then needs a shared backend such as Redis: each worker keeps its own memory.

Metrics are the exception: every worker records into one directory of prometheus_client files
(`share_metrics`, made before prometheus_client is imported), so whichever worker answers
GET /metrics answers for all of them (sidecar/features/observability/multiprocess.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import IO

from sidecar.cli.unix_socket import INHERITED_FD_ENV
from sidecar.devtools.launcher import death_signal_setter
from sidecar.policy.snapshot import Policy

WORKERS_ENV = "GATEWAY_SIDECAR_WORKERS"
_CHILD_ENV = "GATEWAY_SIDECAR_WORKER_CHILD"
# prometheus_client's switch to multiprocess mode, read when it is imported (its values module).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_KEY_BYTES = 32


class KeyHandoverError(Exception):
    """A worker child got no usable decision key from its parent."""


def worker_count(env: Mapping[str, str] | None = None) -> int:
    """Sidecar processes to run: GATEWAY_SIDECAR_WORKERS (at least 1); always 1 inside a worker."""
    env = os.environ if env is None else env
    if env.get(_CHILD_ENV):
        return 1
    return max(1, int(env.get(WORKERS_ENV, "1") or "1"))


def is_child(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a worker started by `serve_workers`."""
    return bool((os.environ if env is None else env).get(_CHILD_ENV))


def share_metrics(argv: Sequence[str], env: MutableMapping[str, str]) -> Path | None:
    """Prepares `python -m sidecar <argv>`'s metrics before prometheus_client is imported
    (sidecar/__main__.py): for `serve` with N > 1 workers, a fresh private directory (mode 0700,
    under TMPDIR or /tmp) becomes PROMETHEUS_MULTIPROC_DIR in `env`; this process and the workers
    it starts (they inherit the variable) record their metrics into files there. Otherwise the
    variable is removed, so one process keeps prometheus_client's in-memory values whatever the
    environment said; a worker child keeps its parent's. Returns the directory it made (the
    caller removes it at exit), or None. A malformed worker count is left to `serve` to report.
    """
    if list(argv[:1]) != ["serve"] or is_child(env):
        return None
    env.pop(METRICS_DIR_ENV, None)
    try:
        if worker_count(env) <= 1:
            return None
    except ValueError:
        return None
    path = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    env[METRICS_DIR_ENV] = str(path)
    return path


def unsupported(count: int, policy: Policy) -> str | None:
    """Why `count` workers cannot serve this policy, or None. In-process quota counters (and
    their state file) would be split between the workers, so limits need the Redis store."""
    if count > 1 and policy.limits.limits and policy.limits.store.backend != "redis":
        return (f"{WORKERS_ENV}={count} needs `limits.store.backend: redis`: with the memory store "
                "each worker would count quotas on its own")
    return None


def die_with_parent() -> None:
    """A worker must not outlive the process that started it (Linux: PR_SET_PDEATHSIG; elsewhere
    the parent's finally still stops workers)."""
    set_death_signal = death_signal_setter()
    if set_death_signal is not None:
        set_death_signal()


def read_handed_key(stream: IO[str]) -> bytes:
    """A child's decision key: one hex line its parent wrote to its stdin. Raises
    KeyHandoverError saying what was wrong."""
    line = stream.readline().strip()
    try:
        key = bytes.fromhex(line)
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES:
        raise KeyHandoverError(f"this sidecar worker ({_CHILD_ENV}=1) needs the decision key of the process that "
                               f"started it on stdin ({_KEY_BYTES * 2}+ hex digits); it got none, so requests "
                               "decided by another worker could not be forwarded here. Start workers through "
                               f"`python -m sidecar serve` with {WORKERS_ENV}.")
    return key


def serve_workers(count: int, serve: Callable[[bool], None], stop_timeout: float, decision_key: bytes,
                  shared_fd: int | None = None) -> None:
    """Runs `serve(reuse_port)` here and in count-1 child processes that get `decision_key` on
    their stdin and the listening descriptor `shared_fd` (the Unix socket, sidecar/cli/unix_socket.py)
    as GATEWAY_SIDECAR_SOCKET_FD; stops the children after."""
    if count <= 1 and not is_child():
        serve(False)
        return
    children = [_start_child(decision_key, shared_fd) for _ in range(count - 1)]
    try:
        serve(True)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        # Their metric files go with the directory, which `python -m sidecar` removes now; a worker
        # that dies earlier is forgotten at the next scrape (observability/multiprocess.py).


def _start_child(decision_key: bytes, shared_fd: int | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, _CHILD_ENV: "1"}
    if shared_fd is not None:
        env[INHERITED_FD_ENV] = str(shared_fd)
    child = subprocess.Popen([sys.executable, "-m", "sidecar", "serve"], env=env, stdin=subprocess.PIPE,
                             pass_fds=() if shared_fd is None else (shared_fd,))
    assert child.stdin is not None  # stdin=PIPE
    child.stdin.write(decision_key.hex().encode() + b"\n")
    child.stdin.close()
    return child
