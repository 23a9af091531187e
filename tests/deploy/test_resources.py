"""Around the pod: termination timing, config and secret volumes, Service, NetworkPolicy, HPA, PDB."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar.settings import Settings
from tests.deploy.support import ENVOY, OVERLAYS, SIDECAR, Rendered

LABELS = {"app.kubernetes.io/name": "llm-gateway"}
DEFAULTS = Settings()


def _envoy_config(rendered: Rendered) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(rendered.config_map("llm-gateway-envoy")["envoy.yaml"])
    return config


def _drain_timeout(rendered: Rendered) -> int:
    listener = _envoy_config(rendered)["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return int(str(manager["drain_timeout"]).removesuffix("s"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_agree_with_the_shipped_envoy_config(overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    resources = _envoy_config(r)["static_resources"]
    listener = resources["listeners"][0]["address"]["socket_address"]
    cluster = resources["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    admin = _envoy_config(r)["admin"]["address"]["socket_address"]
    scrape = resources["listeners"][1]["address"]["socket_address"]  # the `metrics` listener
    assert [p["containerPort"] for p in r.container(ENVOY)["ports"]] == [listener["port_value"], scrape["port_value"]]
    assert str(listener["port_value"]) == r.env(SIDECAR)["GATEWAY_PORT"]
    assert cluster["endpoint"]["address"] == {"pipe": {"path": r.env(SIDECAR)["GATEWAY_SIDECAR_SOCKET"]}}
    assert str(admin["port_value"]) == r.env(ENVOY)["GATEWAY_ADMIN_PORT"] == r.env(SIDECAR)["GATEWAY_ADMIN_PORT"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_drain_seconds_agree_everywhere(overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    drain = int(r.env(SIDECAR)["GATEWAY_DRAIN_SECONDS"])
    args = r.container(ENVOY)["args"]
    assert int(r.env(ENVOY)["GATEWAY_DRAIN_SECONDS"]) == drain
    assert int(args[args.index("--drain-time-s") + 1]) == drain
    assert _drain_timeout(r) == drain


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_envoy_drain_then_sidecar_drain(overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    drain = int(r.env(SIDECAR)["GATEWAY_DRAIN_SECONDS"])
    deregister = int(r.env(ENVOY)["GATEWAY_DEREGISTER_SECONDS"])
    assert 0 < deregister < drain
    # Envoy's preStop waits at most `drain`; then the sidecar gets SIGTERM and up to `drain` again.
    assert r.pod()["terminationGracePeriodSeconds"] > 2 * drain
    assert r.container(ENVOY)["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/bash", "/etc/envoy/drain.sh"]
    assert "drain.sh" in r.config_map("llm-gateway-envoy")
    # The sidecar needs no preStop: as a native sidecar it is stopped only after Envoy has exited.
    assert "lifecycle" not in r.container(SIDECAR)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policies_come_from_a_configmap_directory_that_can_change_in_place(
        overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    volumes = {v["name"]: v for v in r.pod()["volumes"]}
    folder = r.env(SIDECAR)["GATEWAY_POLICIES"]
    mount = next(m for m in r.container(SIDECAR)["volumeMounts"] if m["mountPath"] == folder)
    assert mount["readOnly"] is True and "subPath" not in mount
    # No hash suffix: `kubectl apply` updates this ConfigMap in place and the sidecar hot-reloads it.
    assert volumes[mount["name"]]["configMap"]["name"] == "llm-gateway-policies"
    assert r.one("ConfigMap", "llm-gateway-policies")["metadata"]["name"] == "llm-gateway-policies"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_provider_keys_are_secret_files_only_the_sidecar_sees(overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    volumes = {v["name"]: v for v in r.pod()["volumes"]}
    secret_mounts = {m["mountPath"]: volumes[m["name"]]["secret"] for c in r.containers()
                     for m in c.get("volumeMounts", []) if "secret" in volumes[m["name"]]}
    assert list(secret_mounts) == ["/var/run/secrets/gateway"]
    assert secret_mounts["/var/run/secrets/gateway"]["secretName"] == "llm-gateway-provider-keys"
    assert secret_mounts["/var/run/secrets/gateway"]["defaultMode"] == 0o440
    envoy_mounts = {m["name"] for m in r.container(ENVOY)["volumeMounts"]}
    assert not any("secret" in volumes[name] for name in envoy_mounts)
    # Prod must not start without its keys; dev runs on the demo provider and needs none.
    assert secret_mounts["/var/run/secrets/gateway"]["optional"] is (overlay != "prod")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_address_is_optional_and_secret(overlay: str, rendered: dict[str, Rendered]) -> None:
    env = {e["name"]: e for e in rendered[overlay].container(SIDECAR)["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "llm-gateway-redis", "key": "REDIS_URL", "optional": True}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_reaches_envoy_only(overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    service = r.one("Service")["spec"]
    assert service["selector"] == LABELS
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(DEFAULTS.listen_port, "http"),
                                                                        (DEFAULTS.metrics_port, "metrics")]
    assert LABELS.items() <= r.one("Deployment")["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_the_envoy_ports(overlay: str, rendered: dict[str, Rendered]) -> None:
    policy = rendered[overlay].one("NetworkPolicy")["spec"]
    assert policy["podSelector"] == {"matchLabels": LABELS}
    assert "Ingress" in policy["policyTypes"]
    ports = [p for rule in policy["ingress"] for p in rule["ports"]]
    assert ports == [{"port": "http", "protocol": "TCP"}, {"port": "metrics", "protocol": "TCP"}]
    envoy_ports = {p["name"]: p["containerPort"] for p in rendered[overlay].container(ENVOY)["ports"]}
    assert envoy_ports == {"http": DEFAULTS.listen_port, "metrics": DEFAULTS.metrics_port}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaler_owns_replicas_and_disruptions_are_bounded(overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    assert "replicas" not in r.one("Deployment")["spec"]  # re-applying must not reset the HPA's count
    hpa = r.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-gateway"}
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    pdb = r.one("PodDisruptionBudget")["spec"]
    assert pdb["selector"] == {"matchLabels": LABELS} and pdb["maxUnavailable"] == 1
    if overlay == "prod":
        assert hpa["minReplicas"] >= 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_restricted_pod_security(overlay: str, rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    namespace = r.one("Namespace")["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    others = {d["metadata"].get("namespace") for d in r.docs if d["kind"] != "Namespace"}
    assert others == {namespace["name"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_reaches_the_sidecar_over_a_socket_in_a_shared_emptydir(overlay: str,
                                                                      rendered: dict[str, Rendered]) -> None:
    """Both containers mount the volume that holds GATEWAY_SIDECAR_SOCKET; fsGroup lets Envoy open it."""
    r = rendered[overlay]
    path = r.env(SIDECAR)["GATEWAY_SIDECAR_SOCKET"]
    folder = path.rsplit("/", 1)[0]
    volumes = {v["name"]: v for v in r.pod()["volumes"]}
    mounted = [next(m["name"] for m in r.container(name)["volumeMounts"] if m["mountPath"] == folder)
               for name in (SIDECAR, ENVOY)]
    assert mounted[0] == mounted[1]
    assert "emptyDir" in volumes[mounted[0]]
    assert r.pod()["securityContext"]["fsGroup"] == r.container(SIDECAR).get(
        "securityContext", {}).get("runAsGroup", r.pod()["securityContext"]["runAsGroup"])
