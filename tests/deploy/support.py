"""Renders the kustomize overlays and finds things in the output, for the deploy/ tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.tools import find

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
# Every overlay is rendered and checked; a new one is picked up without touching the tests.
OVERLAYS = tuple(sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml")))
# The oldest Kubernetes the manifests must validate against: native sidecars need 1.29.
KUBERNETES_VERSION = "1.29"
SIDECAR = "sidecar"
ENVOY = "envoy"

Doc = dict[str, Any]


def kubectl() -> str | None:
    return find("kubectl")


def kubernetes_validate() -> str:
    beside_python = Path(sys.executable).parent / "kubernetes-validate"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubernetes-validate")
    assert found, "kubernetes-validate not installed: pip install -e '.[dev]'"
    return found


@dataclass(frozen=True)
class Rendered:
    """One overlay's `kubectl kustomize` output: the text and its parsed documents."""

    overlay: str
    text: str
    docs: tuple[Doc, ...]

    def one(self, kind: str, name_prefix: str = "") -> Doc:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} {name_prefix!r}, got {len(found)}"
        return found[0]

    def pod(self) -> Doc:
        spec: Doc = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    def containers(self) -> list[Doc]:
        """Every container of the pod: native sidecars (init containers) and the main ones."""
        pod = self.pod()
        return [*pod.get("initContainers", []), *pod["containers"]]

    def container(self, name: str) -> Doc:
        found = [c for c in self.containers() if c["name"] == name]
        assert len(found) == 1, f"{self.overlay}: no container {name}"
        return found[0]

    def env(self, container: str) -> dict[str, str]:
        return {e["name"]: e["value"] for e in self.container(container).get("env", []) if "value" in e}

    def config_map(self, name_prefix: str) -> dict[str, str]:
        data: dict[str, str] = self.one("ConfigMap", name_prefix)["data"]
        return data


def render_overlay(kubectl_path: str, overlay: str) -> Rendered:
    result = subprocess.run([kubectl_path, "kustomize", str(DEPLOY / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(result.stdout) if d)
    return Rendered(overlay, result.stdout, docs)


def probe_url(probe: Doc) -> str:
    """The URL an exec probe of the form `python -c "…urlopen(sys.argv[1]…)" URL` requests."""
    command: list[str] = probe["exec"]["command"]
    assert command[:2] == ["python", "-c"] and "urlopen(sys.argv[1]" in command[2], command
    return command[3]
