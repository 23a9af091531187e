"""The CI checks, offline: kubernetes-validate (bundled schemas) and `envoy --mode validate`."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from sidecar.devtools.launcher import envoy_binary
from tests.deploy.support import KUBERNETES_VERSION, OVERLAYS, Rendered, kubernetes_validate


def _validate(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubernetes_validate(), "--strict", "-k", KUBERNETES_VERSION, "-"],
                          input=text, capture_output=True, text=True, timeout=120)


def test_dev_and_prod_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_strict_schema_validation(overlay: str, rendered: dict[str, Rendered]) -> None:
    result = _validate(rendered[overlay].text)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every resource was checked, against the requested version.
    assert output.count("passed for resource") == len(rendered[overlay].docs), output
    assert f"against version {KUBERNETES_VERSION}" in output


def test_strict_validation_rejects_an_unknown_container_field(rendered: dict[str, Rendered]) -> None:
    """The check above can fail: a misspelt field in a container is an error, not ignored."""
    docs = copy.deepcopy(list(rendered["prod"].docs))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 8080}}
    result = _validate(yaml.safe_dump_all(docs))
    assert result.returncode != 0
    assert "'readinesProbe' was unexpected" in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shipped_envoy_config_passes_envoy_validate(overlay: str, rendered: dict[str, Rendered],
                                                     tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(rendered[overlay].config_map("llm-gateway-envoy")["envoy.yaml"], encoding="utf-8")
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "configuration" in result.stdout and "OK" in result.stdout, result.stdout
