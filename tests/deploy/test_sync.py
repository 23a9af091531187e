"""What deploy/ ships stays what the repository builds: Envoy config, policies, images, Dockerfile."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.devtools.launcher import envoy_binary
from sidecar.envoy.config import render
from sidecar.policy.loader import load_policy
from sidecar.settings import Settings
from tests.deploy.support import BASE, DEPLOY, ENVOY, OVERLAYS, REPO, SIDECAR, Rendered

IN_POD = Settings.from_env({"GATEWAY_LISTEN_ADDRESS": "0.0.0.0", "GATEWAY_SIDECAR_SOCKET": "/var/run/gateway/sidecar.sock"})
REFRESH = "run `make deploy-config` to refresh deploy/base"


def test_shipped_envoy_config_is_the_rendered_template() -> None:
    shipped = (BASE / "envoy" / "envoy.yaml").read_text(encoding="utf-8")
    assert shipped == render(IN_POD), f"deploy/base/envoy/envoy.yaml is stale: {REFRESH}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shipped_envoy_config_is_rendered_from_the_sidecars_own_settings(overlay: str,
                                                                          rendered: dict[str, Rendered]) -> None:
    """Ports, body limit and drain time: what the pod tells the sidecar is what Envoy was built for."""
    settings = Settings.from_env({**rendered[overlay].env(SIDECAR), "GATEWAY_LISTEN_ADDRESS": "0.0.0.0"})
    assert rendered[overlay].config_map("llm-gateway-envoy")["envoy.yaml"] == render(settings)


def test_shipped_envoy_config_listens_on_the_pod_and_keeps_admin_on_loopback() -> None:
    config = yaml.safe_load((BASE / "envoy" / "envoy.yaml").read_text(encoding="utf-8"))
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("0.0.0.0", 8080)
    endpoint = config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"] == {"pipe": {"path": "/var/run/gateway/sidecar.sock"}}


def test_base_policies_are_the_repository_demo_policies() -> None:
    repo = {p.name: p.read_bytes() for p in (REPO / "policies").glob("*.y*ml")}
    shipped = {p.name: p.read_bytes() for p in (BASE / "policies").glob("*.y*ml")}
    assert shipped == repo, f"deploy/base/policies differs from policies/: {REFRESH}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shipped_policies_load(overlay: str, rendered: dict[str, Rendered], tmp_path: Path) -> None:
    for name, text in rendered[overlay].config_map("llm-gateway-policies").items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    policy = load_policy(tmp_path)
    assert policy.models.routes, f"{overlay}: no models"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_policy_file_of_the_overlay_ships(overlay: str, rendered: dict[str, Rendered]) -> None:
    """A file added to a policies/ folder must be listed in that kustomization's generator too."""
    own = DEPLOY / "overlays" / overlay / "policies"
    folder = own if own.is_dir() else BASE / "policies"
    names = {p.name for p in folder.glob("*.y*ml")}
    assert set(rendered[overlay].config_map("llm-gateway-policies")) == names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_provider_key_files_live_in_the_mounted_secret(overlay: str, rendered: dict[str, Rendered]) -> None:
    files = [m.group(1) for text in rendered[overlay].config_map("llm-gateway-policies").values()
             for m in re.finditer(r"file:\s*([^\s},]+)", text)]
    assert all(f.startswith("/var/run/secrets/gateway/") for f in files), files
    if overlay == "prod":
        assert files, "the prod example should show a provider key read from the Secret"


def _route_for(path: str, config: dict[str, Any]) -> dict[str, Any] | None:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        match = route["match"]
        if match.get("path") == path or (match.get("prefix") not in (None, "/") and path.startswith(match["prefix"])):
            return dict(route)
    return None


def test_envoy_readiness_path_is_routed_by_the_shipped_config(rendered: dict[str, Rendered]) -> None:
    path = rendered["prod"].container(ENVOY)["readinessProbe"]["httpGet"]["path"]
    config = yaml.safe_load((BASE / "envoy" / "envoy.yaml").read_text(encoding="utf-8"))
    route = _route_for(path, config)
    assert route is not None and "direct_response" not in route, f"no route serves {path}"


def _dockerfile() -> list[list[str]]:
    """Instructions as word lists, continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [line.split() for line in joined.splitlines() if line.strip()]


def test_dockerfile_base_image_is_a_pinned_slim_python_311() -> None:
    instructions = _dockerfile()
    args = dict(i[1].split("=", 1) for i in instructions if i[0] == "ARG" and "=" in i[1])
    bases = [i[1] for i in instructions if i[0] == "FROM"]
    assert bases and all(b == "${PYTHON_IMAGE}" for b in bases), bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]


def test_dockerfile_runs_the_sidecar_as_the_pods_non_root_user(rendered: dict[str, Rendered]) -> None:
    instructions = _dockerfile()
    user = [i[1] for i in instructions if i[0] == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    pod_user = rendered["prod"].pod()["securityContext"]["runAsUser"]
    assert rendered["prod"].container(SIDECAR)["securityContext"].get("runAsUser", pod_user) == int(uid)
    entrypoint = next(" ".join(i[1:]) for i in instructions if i[0] == "ENTRYPOINT")
    assert entrypoint == '["python", "-m", "sidecar"]'
    assert rendered["prod"].container(SIDECAR)["args"] == ["serve"]


def test_envoy_image_is_the_version_the_tests_run() -> None:
    version = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=30).stdout
    tested = re.search(r"/(\d+\.\d+\.\d+)/", version)
    assert tested, version
    deployment = yaml.safe_load((BASE / "deployment.yaml").read_text(encoding="utf-8"))
    envoy = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == ENVOY)
    assert envoy["image"] == f"envoyproxy/envoy:v{tested.group(1)}"


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    copied = {word.rstrip("/") for i in _dockerfile() if i[0] == "COPY" and not i[1].startswith("--from")
              for word in i[1:-1] if not word.startswith("--")}
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore  # everything else (.git, .venv, tests) stays out of the build context
    assert allowed == copied
