"""Offline checks of deploy/monitoring: promtool, the dashboard's queries, the metric names."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric

from sidecar.features.observability.metrics import GatewayMetrics
from tests.deploy.support import DEPLOY
from tests.tools import require

MONITORING = DEPLOY / "monitoring"
COMPONENT = DEPLOY / "components" / "monitoring"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts.test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# What Grafana puts in place of its variables, so a query can be parsed as plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "3h", "$__interval": "1m", "$namespace": ".*",
                     "$model": ".*", "$token": ".*"}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",),
             "gauge": ("",), "stateset": ("",)}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = require("promtool", "apt-get install prometheus (Debian ships promtool in it; .ci/run installs it)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and variable query."""
    found = [(f"panel {p['title']!r} {t['refId']}", t["expr"])
             for p in board["panels"] for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*), \w+\)", variable["query"]["query"])
            assert inner, variable["query"]
            found.append((f"variable {variable['name']!r}", inner.group(1)))
    return found


def as_plain_promql(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def rules_file_for(queries: list[tuple[str, str]]) -> str:
    """Each query as a recording rule: `promtool check rules` then parses every one."""
    rules = [{"record": f"dashboard:query_{i}", "expr": as_plain_promql(expr)} for i, (_, expr) in enumerate(queries)]
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})


def exported_metric_names() -> set[str]:
    """Every series name the sidecar's registry can export."""
    metrics = GatewayMetrics()
    families: list[Metric] = list(metrics.registry.collect())
    return {family.name + suffix for family in families for suffix in _SUFFIXES[family.type]}


def gateway_names(text: str) -> set[str]:
    return set(re.findall(r"\bgateway_[a-z_]+\b", text))


def rule_alerts(text: str) -> set[str]:
    return {rule["alert"] for group in yaml.safe_load(text)["groups"] for rule in group["rules"] if "alert" in rule}
