"""Tools the suite runs that pip does not install (redis-server, promtool, chromium, kubectl).

A missing tool skips its tests with the reason on a developer's machine, and fails them in CI
(CI=true), where .ci/run installs every one: a green CI run has really run them.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> None:
    """Fail in CI, skip (with the reason) elsewhere."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(message)


def require(binary: str, install: str) -> str:
    """The path of `binary`, else fail in CI / skip elsewhere naming how to install it."""
    found = shutil.which(binary)
    if found is None:
        missing(f"{binary} not found: {install}")
        raise AssertionError("unreachable")  # missing() raises
    return found
