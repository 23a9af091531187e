"""A test whose tool is missing never skips silently: loud outside CI, a failure in CI (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NEEDS_A_MISSING_TOOL = '''
from tests.tools import require


def test_needs_it():
    require("no-such-tool-7f3a", "apt-get install no-such-tool-7f3a")


def test_other():
    pass
'''


def run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_terminal_summary  # noqa: F401\n")
    (tmp_path / "test_it.py").write_text(NEEDS_A_MISSING_TOOL)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_outside_ci_the_run_ends_naming_what_it_could_not_run(tmp_path: Path) -> None:
    result = run(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "NOT RUN: tools missing on this machine" in result.stdout
    assert "1 tests not run: TOOL MISSING: no-such-tool-7f3a not found; apt-get install no-such-tool-7f3a" \
        in result.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_missing_tool_fails_the_test(tmp_path: Path, ci: str) -> None:
    result = run(tmp_path, ci)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert "TOOL MISSING: no-such-tool-7f3a" in result.stdout
