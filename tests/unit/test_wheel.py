"""The wheel stands alone: built, installed outside the checkout, it renders Envoy's config and checks
a policy folder, with no source tree and no `PYTHONPATH` pointing back at the checkout.

The checkout is installed editable in the test venv; the wheel goes to its own `--target` folder,
first on `PYTHONPATH`, and each run asserts which `sidecar` it imported. The dependencies come
from the venv (the wheel is installed with `--no-deps`): what is tested is the package's own files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from sidecar.envoy.config import render
from sidecar.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a folder of its own; returns that folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy, so the build leaves nothing (build/, *.egg-info) in the checkout
    source.mkdir()
    shutil.copytree(REPO / "sidecar", source / "sidecar", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, source / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(work / "dist")], work)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"sidecar/envoy/envoy.yaml.tmpl", "sidecar/py.typed", "sidecar/__main__.py"} <= set(names)
    assert not [n for n in names if n.startswith("tests/")]
    site = work / "site"
    done = _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], work)
    assert done.returncode == 0, done.stderr
    return site


def _env(site: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(site)
    return env


def test_the_installed_wheel_is_what_runs(installed: Path, tmp_path: Path) -> None:
    found = _run([sys.executable, "-c", "import sidecar; print(sidecar.__file__)"], tmp_path, _env(installed))
    assert found.returncode == 0, found.stderr
    imported = Path(found.stdout.strip())
    assert imported.is_relative_to(installed), imported
    assert not imported.is_relative_to(REPO)


def test_envoy_config_renders_from_the_wheel(installed: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run([sys.executable, "-m", "sidecar", "envoy-config"], tmp_path, _env(installed))
    assert result.returncode == 0, result.stderr
    assert "static_resources" in yaml.safe_load(result.stdout)
    # The same template as the checkout's, with the same (default) settings.
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    assert result.stdout == render(Settings.from_env())


def test_check_passes_on_a_policy_folder_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    policies = shutil.copytree(REPO / "policies", tmp_path / "policies")
    result = _run([sys.executable, "-m", "sidecar", "check", str(policies)], tmp_path, _env(installed))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{policies}: OK (version ")
    assert result.stdout.rstrip().endswith("; envoy config valid")  # envoy --mode validate ran on it
