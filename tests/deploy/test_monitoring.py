"""deploy/monitoring: alert rules checked and unit-tested with promtool, the dashboard's queries
parsed, metric names real, and the PrometheusRule in sync with the plain rules file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.deploy.monitoring import (
    COMPONENT,
    DASHBOARD,
    MONITORING,
    RULE_TESTS,
    RULES,
    dashboard,
    dashboard_queries,
    exported_metric_names,
    gateway_names,
    promtool,
    rule_alerts,
    rules_file_for,
)

EXPECTED_ALERTS = {"LLMGatewayBreakerOpen", "LLMGatewayHighErrorRatio", "LLMGatewayHighLatencyP99",
                   "LLMGatewayPolicyReloadFailing", "LLMGatewayQuotaStoreDegraded", "LLMGatewayTokenNearMonthlyQuota"}


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_every_alert_fires_in_the_promtool_unit_tests() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert rule_alerts(RULES.read_text(encoding="utf-8")) == EXPECTED_ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    assert fired == quiet == EXPECTED_ALERTS  # each fires from a series, and each stays quiet before


def test_the_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    shutil.copy(RULES, tmp_path / RULES.name)
    text = RULE_TESTS.read_text(encoding="utf-8").replace("deployment: openai/gpt-4}", "deployment: azure/gpt-4}")
    (tmp_path / RULE_TESTS.name).write_text(text, encoding="utf-8")
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and "LLMGatewayBreakerOpen" in result.stdout + result.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = dashboard_queries(dashboard())
    assert len(queries) >= 25
    rules = tmp_path / "dashboard.rules.yaml"
    rules.write_text(rules_file_for(queries), encoding="utf-8")
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_a_broken_dashboard_query_is_caught(tmp_path: Path) -> None:
    rules = tmp_path / "broken.rules.yaml"
    rules.write_text(rules_file_for([("broken", "sum by (model) (rate(gateway_requests_total[$__rate_interval])")]),
                     encoding="utf-8")
    result = promtool("check", "rules", str(rules))
    assert result.returncode != 0 and "parse error" in (result.stdout + result.stderr).lower()


def test_dashboard_and_alerts_use_only_metrics_the_sidecar_exports() -> None:
    exported = exported_metric_names()
    assert {"gateway_spend_usd_total", "gateway_quota_used_ratio", "gateway_quota_backend_errors_total"} <= exported
    for path in (DASHBOARD, RULES, RULE_TESTS):
        unknown = gateway_names(path.read_text(encoding="utf-8")) - exported
        assert not unknown, f"{path.name}: {sorted(unknown)}"


def test_dashboard_covers_what_a_platform_team_watches() -> None:
    text = DASHBOARD.read_text(encoding="utf-8")
    for metric in ("gateway_requests_total", "gateway_request_duration_seconds_bucket",
                   "gateway_time_to_first_token_seconds_bucket", "gateway_tokens_total", "gateway_spend_usd_total",
                   "gateway_guardrail_findings_total", "gateway_limit_denials_total", "gateway_breaker_state",
                   "gateway_policy_reloads_total", "envoy_http_downstream_rq_xx"):
        assert metric in text, metric
    board = dashboard()
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]  # no hard-coded datasource
    assert json.loads(json.dumps(board)) == board


def test_prometheusrule_is_the_plain_rules_file() -> None:
    rule = yaml.safe_load((COMPONENT / "prometheusrule.yaml").read_text(encoding="utf-8"))
    plain = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert rule["kind"] == "PrometheusRule" and rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == plain["groups"], "stale: run `make deploy-config`"
