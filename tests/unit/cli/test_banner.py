"""What `make run` prints: how to reach this gateway, and how `explain` reaches the same provider
and quota counters (it runs in a process of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.cli.main import DEMO_TOKEN, _print_banner
from sidecar.devtools.launcher import Stack
from sidecar.features.quotas.install import STATE_DIR_ENV
from sidecar.policy.loader import load_policy
from sidecar.settings import Settings

REPO = Path(__file__).resolve().parents[3]


def banner(capsys: pytest.CaptureFixture[str], tmp_path: Path, **settings: object) -> list[str]:
    chosen = Settings(policies_dir=REPO / "policies", **settings)  # type: ignore[arg-type]
    _print_banner(Stack(chosen, tmp_path), chosen, load_policy(chosen.policies_dir), DEMO_TOKEN)
    return capsys.readouterr().out.splitlines()


def test_explain_is_told_the_ports_and_the_state_folder_of_this_gateway(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, ".gateway-state/24000")
    lines = banner(capsys, tmp_path, listen_port=24000, demo_provider_port=24003)
    assert ("  explain against this gateway: GATEWAY_DEMO_PROVIDER_PORT=24003 GATEWAY_STATE_DIR=.gateway-state/24000 "
            "python -m sidecar explain …") in lines
    assert "LLM gateway listening on http://127.0.0.1:24000/api/client/v1/chat/completions" in lines


def test_with_the_default_ports_and_state_explain_needs_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    assert not [line for line in banner(capsys, tmp_path) if "explain" in line]
