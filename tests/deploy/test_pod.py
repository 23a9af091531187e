"""The rendered pod, per overlay and per container: native sidecar, hardening, resources, probes."""

from __future__ import annotations

import pytest

from sidecar.settings import Settings
from tests.deploy.support import ENVOY, OVERLAYS, SIDECAR, Rendered, probe_url

DEFAULTS = Settings()
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sidecar_is_a_native_sidecar_and_envoy_the_main_container(overlay: str,
                                                                  rendered: dict[str, Rendered]) -> None:
    pod = rendered[overlay].pod()
    sidecar = next(c for c in pod["initContainers"] if c["name"] == SIDECAR)
    assert sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in pod["containers"]] == [ENVOY]
    # Every init container is a native sidecar: a plain init container would block the pod forever.
    assert all(c.get("restartPolicy") == "Always" for c in pod["initContainers"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_security_context(overlay: str, rendered: dict[str, Rendered]) -> None:
    pod = rendered[overlay].pod()
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened(overlay: str, rendered: dict[str, Rendered]) -> None:
    pod_user = rendered[overlay].pod()["securityContext"]["runAsUser"]
    for container in rendered[overlay].containers():
        name, context = container["name"], container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["runAsNonRoot"] is True, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert context.get("privileged") is not True, name
        assert context.get("runAsUser", pod_user) != 0, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_a_writable_tmp_and_nothing_else_writable_but_emptydirs(
        overlay: str, rendered: dict[str, Rendered]) -> None:
    volumes = {v["name"]: v for v in rendered[overlay].pod()["volumes"]}
    for container in rendered[overlay].containers():
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], container["name"]
        for path, mount in mounts.items():
            writable = not mount.get("readOnly", False)
            assert not writable or "emptyDir" in volumes[mount["name"]], f"{container['name']} {path}"
            # subPath mounts never see ConfigMap/Secret updates (no hot reload, no key rotation).
            assert "subPath" not in mount, f"{container['name']} {path}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_cpu_and_memory_requests_and_limits(overlay: str,
                                                                rendered: dict[str, Rendered]) -> None:
    for container in rendered[overlay].containers():
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, f"{container['name']} {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_startup_readiness_and_liveness_probes(overlay: str,
                                                                   rendered: dict[str, Rendered]) -> None:
    for container in rendered[overlay].containers():
        for probe in PROBES:
            assert probe in container, f"{container['name']} has no {probe}"
            assert container[probe].get("timeoutSeconds", 1) >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sidecar_is_loopback_only_and_probed_from_inside(overlay: str, rendered: dict[str, Rendered]) -> None:
    sidecar = rendered[overlay].container(SIDECAR)
    env = rendered[overlay].env(SIDECAR)
    port = env["GATEWAY_SIDECAR_PORT"]
    assert port == str(DEFAULTS.sidecar_port)
    assert "ports" not in sidecar  # nothing to reach from outside the pod
    assert probe_url(sidecar["startupProbe"]) == f"http://127.0.0.1:{port}/readyz"
    assert probe_url(sidecar["readinessProbe"]) == f"http://127.0.0.1:{port}/readyz"
    assert probe_url(sidecar["livenessProbe"]) == f"http://127.0.0.1:{port}/healthz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_serves_clients_and_scrapes_and_is_probed_on_its_listener(overlay: str, rendered: dict[str, Rendered]) -> None:
    envoy = rendered[overlay].container(ENVOY)
    assert envoy["ports"] == [{"name": "http", "containerPort": DEFAULTS.listen_port, "protocol": "TCP"},
                              {"name": "metrics", "containerPort": DEFAULTS.metrics_port, "protocol": "TCP"}]
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert envoy["startupProbe"]["tcpSocket"] == {"port": "http"}
    assert envoy["livenessProbe"]["tcpSocket"] == {"port": "http"}
    # No other container publishes a port: the listener is the pod's only way in.
    others = [c["name"] for c in rendered[overlay].containers() if c["name"] != ENVOY and c.get("ports")]
    assert others == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_runs_the_shipped_config_with_drain_and_bounded_threads(overlay: str,
                                                                      rendered: dict[str, Rendered]) -> None:
    envoy = rendered[overlay].container(ENVOY)
    args = envoy["args"]
    assert envoy["command"] == ["/usr/local/bin/envoy"]
    assert args[args.index("--config-path") + 1] == "/etc/envoy/envoy.yaml"
    assert "--disable-hot-restart" in args
    assert args[args.index("--drain-strategy") + 1] == "immediate"
    concurrency = int(args[args.index("--concurrency") + 1])
    assert concurrency <= float(envoy["resources"]["limits"]["cpu"])
    mounts = {m["mountPath"]: m["name"] for m in envoy["volumeMounts"]}
    volumes = {v["name"]: v for v in rendered[overlay].pod()["volumes"]}
    assert volumes[mounts["/etc/envoy"]]["configMap"]["name"].startswith("llm-gateway-envoy-")
