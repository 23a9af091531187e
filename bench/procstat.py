"""CPU time and resident memory of the processes under test, read from /proc.

A watched process counts together with its descendants, so a sidecar that runs several worker
processes is measured as a whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return stat_tail((_PROC / str(pid) / "stat").read_text())
    except OSError:
        return None


def stat_tail(raw: str) -> list[str]:
    """Fields 3… of a /proc/PID/stat line (the tail starts with the state)."""
    # The command name (field 2) may contain spaces and ')'; everything after its last ')' is plain.
    return raw[raw.rindex(")") + 2:].split()


def parse_cpu_seconds(stat_tail: list[str]) -> float:
    """utime + stime (fields 14 and 15 of /proc/PID/stat) in seconds; the tail starts at field 3."""
    return (int(stat_tail[11]) + int(stat_tail[12])) / _TICKS


def parse_rss_mb(status_text: str) -> float:
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def process_tree(root: int) -> list[int]:
    """`root` and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


class Watcher:
    """Named process trees; `cpu()` and `rss_mb()` snapshot all of them."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self.roots = dict(roots)

    def cpu(self) -> dict[str, float]:
        result = {}
        for name, root in self.roots.items():
            total = 0.0
            for pid in process_tree(root):
                fields = _stat_fields(pid)
                if fields is not None:
                    total += parse_cpu_seconds(fields)
            result[name] = total
        return result

    def rss_mb(self) -> dict[str, float]:
        result = {}
        for name, root in self.roots.items():
            total = 0.0
            for pid in process_tree(root):
                try:
                    total += parse_rss_mb((_PROC / str(pid) / "status").read_text())
                except OSError:
                    continue
            result[name] = total
        return result


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}
