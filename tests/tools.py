"""External tools the suite needs (kubectl, redis-server …): never a silent skip for lack of one.

Without the tool, a test skips with a reason starting `TOOL MISSING` on a developer's machine, and
`make test` ends with a banner listing what could not run; in CI (`CI` set, as `.ci/run` runs) it
fails instead, because `.ci/run` installs every tool the suite needs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

MISSING_PREFIX = "TOOL MISSING"


def in_ci() -> bool:
    """Whether this run is CI's (`CI` set and not false), where every tool must be installed."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def find(tool: str) -> str | None:
    """The tool beside the venv's Python (where `.ci/install-tools` puts it), else on PATH."""
    beside_python = Path(sys.executable).parent / tool
    return str(beside_python) if beside_python.exists() else shutil.which(tool)


def missing(message: str) -> None:
    """A tool (or tool package) the test needs is absent: fail in CI, else skip loudly."""
    message = f"{MISSING_PREFIX}: {message}"
    if in_ci():
        pytest.fail(message + " (CI installs it in .ci/run: a missing tool there is a failure)", pytrace=False)
    pytest.skip(message)


def require(tool: str, how: str) -> str:
    """The tool's path; without it: fail in CI, else skip loudly (`how`: how to install it)."""
    found = find(tool)
    if found is not None:
        return found
    missing(f"{tool} not found; {how}")
    raise AssertionError("unreachable")  # missing() raises
