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


@dataclass(frozen=True)
class Credential:
    env: str | None = None
    file: Path | None = None
    _cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def value(self) -> str | None:
        if self.env is not None:
            return os.environ.get(self.env) or None
        if self.file is not None:
            return self._read_file(self.file)
        return None

    def _read_file(self, path: Path) -> str | None:
        now = time.monotonic()
        if now - float(self._cache.get("checked", -1e9)) < _RECHECK_SECONDS:  # type: ignore[arg-type]
            return self._cache.get("value")  # type: ignore[return-value]
        self._cache["checked"] = now
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            self._cache["value"] = None
            return None
        if self._cache.get("mtime") != mtime:
            self._cache["mtime"] = mtime
            self._cache["value"] = path.read_text(encoding="utf-8").strip() or None
        return self._cache.get("value")  # type: ignore[return-value]

    def __repr__(self) -> str:
        where = f"env:{self.env}" if self.env else f"file:{self.file}" if self.file else "none"
        return f"Credential({where})"
