"""The README's own samples match the code: the contract it links, the `check` and `explain` examples
and the files they name (issue 15: they had drifted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
README = (REPO / "README.md").read_text(encoding="utf-8")


def sidecar(*args: str, env: dict[str, str] | None = None) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run([sys.executable, "-m", "sidecar", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=60, env={**environment, **(env or {})})
    assert result.returncode in (0, 1), result.stderr
    return (result.stdout + result.stderr).splitlines()


def sample(command: str) -> list[str]:
    """The lines the README shows after `$ COMMAND`, up to the next command or the block's end."""
    block = README[README.index("$ " + command) + len(command) + 2:]
    lines = block.split("\n```", 1)[0].splitlines()[1:]
    return lines[:next((i for i, line in enumerate(lines) if line.startswith("$ ")), len(lines))]


def test_the_contract_is_in_the_repository_and_linked() -> None:
    assert "(docs/chat-completions-api.md)" in README
    contract = (REPO / "docs" / "chat-completions-api.md").read_text(encoding="utf-8")
    assert "POST /api/client/v1/chat/completions" in contract and "guardrail_block" in contract
    # A link or a path to a file outside the repository (kustomize's own relative paths are fine).
    assert not re.search(r"\]\(\.\./|\.\./shared/", README), "the README points outside the repository"


def test_every_body_an_example_names_is_shipped() -> None:
    bodies = re.findall(r"^\$ python -m sidecar explain .*--body (\S+)$", README, re.MULTILINE)
    assert bodies
    for body in bodies:
        assert isinstance(json.loads((REPO / body).read_text(encoding="utf-8")), dict), body


def test_the_check_sample_is_what_check_prints() -> None:
    command = "python -m sidecar check tests/policy_cases/files/many_errors"
    assert sample(command) == sidecar("check", "--skip-envoy", "tests/policy_cases/files/many_errors")


@pytest.mark.parametrize(("command", "args"), [
    ("python -m sidecar explain --token cgt_demo_Jm3kQ8vYx2LrT9pWn4HsZ6bC1dF7gK0a --body docs/examples/hello.json",
     ["--token", "cgt_demo_Jm3kQ8vYx2LrT9pWn4HsZ6bC1dF7gK0a", "--body", "docs/examples/hello.json"]),
    ("python -m sidecar explain --token-name demo --body docs/examples/mail-me.json",
     ["--token-name", "demo", "--body", "docs/examples/mail-me.json"]),
])
def test_the_explain_samples_are_what_explain_prints(command: str, args: list[str]) -> None:
    shown = [line for line in sample(command) if "…" not in line and not line.startswith(("policy ", "request "))]
    printed = sidecar("explain", *args)
    assert shown and [line for line in shown if line not in printed] == []


def test_explain_names_the_demo_provider_where_make_run_started_it() -> None:
    printed = sidecar("explain", "--token-name", "demo", "--body", "docs/examples/hello.json",
                      env={"GATEWAY_DEMO_PROVIDER_PORT": "9123"})
    assert "provider    POST http://127.0.0.1:9123/v1/chat/completions" in printed
