"""Provider credentials from an environment variable or a mounted file.

A file is re-read when its modification time changes, so a rotated Kubernetes Secret needs no
restart. The value is never logged: `__repr__` hides it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# A Secret volume swaps files via a symlink; checking the file at most this often keeps a stat
# off most requests while a rotation still lands within a second.
_RECHECK_SECONDS = 1.0


@dataclass
class _FileReading:
    """The last reading of a key file: the policy object stays frozen, this small cache does not."""

    checked: float = float("-inf")
    mtime: int | None = None
    value: str | None = None


@dataclass(frozen=True)
class Credential:
    """Where a provider's API key comes from: an environment variable or a mounted secret file (never the policy
    itself).
    """

    env: str | None = None
    file: Path | None = None
    _reading: _FileReading = field(default_factory=_FileReading, compare=False, repr=False)

    def value(self) -> str | None:
        """The key now, or None when unset/missing; a file is re-read at most every few seconds and when its mtime
        changes.
        """
        if self.env is not None:
            return os.environ.get(self.env) or None
        if self.file is not None:
            return self._read_file(self.file)
        return None

    def _read_file(self, path: Path) -> str | None:
        reading = self._reading
        now = time.monotonic()
        if now - reading.checked < _RECHECK_SECONDS:
            return reading.value
        reading.checked = now
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            reading.mtime = reading.value = None
            return None
        if reading.mtime != mtime:
            reading.mtime = mtime
            reading.value = path.read_text(encoding="utf-8").strip() or None
        return reading.value

    def __repr__(self) -> str:
        where = f"env:{self.env}" if self.env else f"file:{self.file}" if self.file else "none"
        return f"Credential({where})"
