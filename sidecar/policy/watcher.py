"""Hot reload: watch the policy folder and swap in each valid change.

The folder is polled (content hash of the policy files, about once a second) rather than
watched with inotify: polling sees every way a file can change, including a Kubernetes
ConfigMap update, which swaps the hidden `..data` symlink to a new timestamped directory in one
rename (the visible files are symlinks through it and never change themselves).

A valid change is swapped into the PolicyStore in one assignment; requests already decided keep
the snapshot they started with. An invalid change keeps the last good snapshot, logs every
error and shows up in metrics; the same broken content is not reported again every second.
Runtime state (quota counters, breaker state) lives on app objects, never in the snapshot, so it
survives any reload.

`catch_up` lets the forwarding path look at once when a decision names a version this process
does not hold yet (another sidecar worker reloaded first), instead of refusing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import Gauge

from sidecar.policy.loader import folder_version, load_policy
from sidecar.policy.reader import PolicyError
from sidecar.policy.snapshot import Policy
from sidecar.policy.store import PolicyStore

log = logging.getLogger("sidecar.policy")


@dataclass(frozen=True)
class Scan:
    """One look at the folder: the version seen, and the loaded policy or its errors if it changed."""

    seen: str
    policy: Policy | None = None
    errors: tuple[str, ...] = ()
    settling: bool = False  # the files changed while being read: look again next time


class ReloadMetrics(Protocol):
    """What the watcher reports (the sidecar's GatewayMetrics); a Protocol, so policy/ does not
    depend on features/observability."""

    reload_errors: Gauge

    def reload(self, ok: bool, errors: int = 0) -> None: ...

    def policy_loaded(self, version: str, loaded_at: float) -> None: ...


@dataclass(frozen=True)
class Rejection:
    """The last policy change that was refused: its folder version, when, and every error."""

    version: str
    at: float  # epoch seconds
    errors: tuple[str, ...]


class PolicyWatcher:
    """Polls a policy folder and swaps each valid change into the store (invalid ones are logged)."""

    def __init__(self, folder: Path, store: PolicyStore, metrics: ReloadMetrics) -> None:
        self.folder = folder
        self.store = store
        self.metrics = metrics
        self.rejected: str | None = None  # the version of the last invalid change, reported once
        self.last_rejection: Rejection | None = None  # kept after a later valid change, for the status page
        self._looking = asyncio.Lock()

    def scan(self) -> Scan:
        """Blocking file reads and parsing: run in a thread by `run`."""
        seen = folder_version(self.folder)
        if seen in (self.store.current.version, self.rejected):
            return Scan(seen)
        try:
            policy = load_policy(self.folder)
        except PolicyError as exc:
            return Scan(seen, errors=tuple(exc.errors), settling=folder_version(self.folder) != seen)
        return Scan(seen, policy=policy, settling=policy.version != seen)

    def apply(self, scan: Scan) -> str:
        """On the event loop: swap, reject or ignore. Returns what happened, for tests and logs."""
        if scan.settling:
            return "settling"
        if scan.policy is not None:
            previous = self.store.current.version
            self.store.swap(scan.policy)
            self.rejected = None
            self.metrics.reload(ok=True)
            self.metrics.policy_loaded(scan.policy.version, time.time())
            log.info("policy reloaded", extra={"fields": {"version": scan.policy.version, "previous": previous}})
            return "reloaded"
        if scan.errors:
            self.rejected = scan.seen
            self.last_rejection = Rejection(scan.seen, time.time(), scan.errors)
            self.metrics.reload(ok=False, errors=len(scan.errors))
            for error in scan.errors:
                log.error("policy error", extra={"fields": {"error": error, "rejected_version": scan.seen}})
            log.warning("policy change rejected", extra={"fields": {
                "rejected_version": scan.seen, "errors": len(scan.errors), "serving": self.store.current.version}})
            return "rejected"
        if scan.seen == self.store.current.version and self.rejected is not None:
            # Someone put the serving policy back: nothing to load, but nothing is broken any more.
            self.rejected = None
            self.metrics.reload_errors.set(0)
            return "restored"
        return "unchanged"

    def check_once(self) -> str:
        """One scan and apply, in the calling thread; returns reloaded/rejected/restored/settling/unchanged."""
        return self.apply(self.scan())

    async def catch_up(self, version: str) -> Policy | None:
        """The snapshot of `version` after one look at the folder now, or None if the folder holds
        another version (one look at a time; later callers find what it swapped in)."""
        async with self._looking:
            # Reading the folder (every file, hashed) is file I/O: off the event loop, like the scan.
            if self.store.get(version) is None and await asyncio.to_thread(folder_version, self.folder) == version:
                self.apply(await asyncio.to_thread(self.scan))
        return self.store.get(version)

    async def run(self, interval: float) -> None:
        """Scans every `interval` seconds (file reads in a thread) until cancelled; never raises."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.apply(await asyncio.to_thread(self.scan))
            except Exception:  # the watcher must outlive any surprise; the serving policy stays
                log.exception("policy watcher failed")


POLICY_WATCHER = web.AppKey("policy_watcher", PolicyWatcher)


def install_watcher(app: web.Application, store: PolicyStore, metrics: ReloadMetrics, interval: float) -> None:
    """Watches the folder the serving policy came from, from startup to shutdown."""

    watcher = PolicyWatcher(Path(store.current.source), store, metrics)
    app[POLICY_WATCHER] = watcher

    async def watch(app: web.Application) -> AsyncIterator[None]:
        if interval <= 0:
            yield
            return
        task = asyncio.create_task(watcher.run(interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(watch)
