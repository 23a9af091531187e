"""Prometheus can scrape the pod: a `metrics` port named in the Service, served by Envoy's scrape
listener (never the client listener), allowed by the NetworkPolicy, and the optional monitoring
component's ServiceMonitor pointing at it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.monitoring import COMPONENT
from tests.deploy.support import ENVOY, KUBERNETES_VERSION, OVERLAYS, SIDECAR, Doc, Rendered, kubernetes_validate
from tests.tools import require

METRICS_PATHS = {"/metrics", "/stats/prometheus"}


def _envoy(rendered: Rendered) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(rendered.config_map("llm-gateway-envoy")["envoy.yaml"])
    return config


def _metrics_listener(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = [lst for lst in config["static_resources"]["listeners"] if lst["name"] == "metrics"]
    found: dict[str, Any] = listener
    return found


def _routes(listener: dict[str, Any]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = (
        listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"])
    return routes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_names_a_metrics_port_served_by_envoys_scrape_listener(overlay: str,
                                                                          rendered: dict[str, Rendered]) -> None:
    r = rendered[overlay]
    ports = {p["name"]: p for p in r.one("Service")["spec"]["ports"]}
    assert ports["metrics"]["targetPort"] == "metrics" and ports["http"]["port"] != ports["metrics"]["port"]
    container = {p["name"]: p["containerPort"] for p in r.container(ENVOY)["ports"]}
    listener = _metrics_listener(_envoy(r))
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": container["metrics"]}
    assert r.env(SIDECAR)["GATEWAY_METRICS_PORT"] == str(container["metrics"])
    served = {route["match"]["path"] for route in _routes(listener) if "route" in route}
    assert served == METRICS_PATHS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_client_listener_serves_no_metrics_and_the_status_page_stays_on_loopback(
        overlay: str, rendered: dict[str, Rendered]) -> None:
    client = _envoy(rendered[overlay])["static_resources"]["listeners"][0]
    assert client["name"] == "gateway"
    paths = {route["match"].get("path") for route in _routes(client)}
    assert not paths & (METRICS_PATHS | {"/status.json", "/"})
    env = rendered[overlay].env(SIDECAR)
    assert env["GATEWAY_STATUS_ADDRESS"] == "127.0.0.1"  # opened with kubectl port-forward; no token needed
    assert all(p["containerPort"] != int(env["GATEWAY_STATUS_PORT"]) for c in rendered[overlay].containers()
               for p in c.get("ports", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policy_lets_the_scrape_in(overlay: str, rendered: dict[str, Rendered]) -> None:
    policy = rendered[overlay].one("NetworkPolicy")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert {"http", "metrics"} <= allowed
    labels = rendered[overlay].one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def _render_with_component(tmp_path: Path, overlay: str) -> tuple[str, list[Doc]]:
    """The overlay with the component added the way the README says: `components:` in its kustomization."""
    kubectl = require("kubectl", "install kubectl (the deploy/ checks render overlays with `kubectl kustomize`)")
    deploy = tmp_path / "deploy"
    shutil.copytree(COMPONENT.parents[1], deploy)
    kustomization = deploy / "overlays" / overlay / "kustomization.yaml"
    config = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    config.setdefault("components", []).append("../../components/monitoring")
    kustomization.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run([kubectl, "kustomize", str(kustomization.parent)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout, [d for d in yaml.safe_load_all(result.stdout) if d]


# The fields of the Prometheus Operator's CRDs (monitoring.coreos.com/v1) these manifests use;
# anything else is a typo kubernetes-validate cannot see (it has no schema for custom resources).
_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"},
         "namespace": {"type": "string"}, "labels": {"type": "object"}}, "additionalProperties": False}
SERVICE_MONITOR = {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"}, "metadata": _META,
    "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False, "properties": {
        "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}, "additionalProperties": False},
        "namespaceSelector": {"type": "object"},
        "endpoints": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["port"],
                      "additionalProperties": False, "properties": {
                          "port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                          "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                          "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                          "scheme": {"enum": ["http", "https"]}}}}}}},
    "additionalProperties": False}
PROMETHEUS_RULE = {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"}, "metadata": _META,
    "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
        "groups": {"type": "array", "items": {"type": "object", "required": ["name", "rules"],
                   "additionalProperties": False, "properties": {
                       "name": {"type": "string"}, "interval": {"type": "string"},
                       "rules": {"type": "array", "items": {"type": "object", "required": ["expr"],
                                 "additionalProperties": False, "properties": {
                                     "alert": {"type": "string"}, "record": {"type": "string"},
                                     "expr": {"type": "string"}, "for": {"type": "string"},
                                     "labels": {"type": "object"}, "annotations": {"type": "object"}}}}}}}}}},
    "additionalProperties": False}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitoring_component_scrapes_both_paths_of_the_service(overlay: str, tmp_path: Path) -> None:
    text, docs = _render_with_component(tmp_path, overlay)
    by_kind = {d["kind"]: d for d in docs}
    monitor, service = by_kind["ServiceMonitor"], by_kind["Service"]
    jsonschema.validate(monitor, SERVICE_MONITOR)
    jsonschema.validate(by_kind["PrometheusRule"], PROMETHEUS_RULE)
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]} == {("metrics", p) for p in METRICS_PATHS}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    # The core resources still pass strict validation with the component added.
    result = subprocess.run([kubernetes_validate(), "--strict", "-k", KUBERNETES_VERSION, "-"], input=text,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_custom_resource_schemas_catch_a_typo() -> None:
    monitor = yaml.safe_load((COMPONENT / "servicemonitor.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(monitor, SERVICE_MONITOR)
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR)
