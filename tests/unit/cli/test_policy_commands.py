"""`check` and `explain` as a platform team runs them: subprocesses on the demo policies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from aiohttp import web

from sidecar.app import init_app
from sidecar.appkeys import PIPELINE
from sidecar.callout.pipeline import Check, DecisionPipeline
from sidecar.cli.explain import AppFactory, explain
from sidecar.cli.explain_cmd import render
from sidecar.cli.main import DEMO_TOKEN
from sidecar.core.errors import RateLimited
from sidecar.core.tokens import hash_token
from sidecar.policy.loader import load_policy
from sidecar.policy.store import PolicyStore
from sidecar.settings import Settings

REPO = Path(__file__).resolve().parents[3]
DEMO = load_policy(REPO / "policies")
CHAT = {"model": "gpt-4", "messages": [{"role": "user", "content": "Hello"}]}


def sidecar(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # Its own empty quota state: `make run` in this checkout leaves counts in ./.gateway-state.
    env = {**os.environ, "PYTHONPATH": str(REPO), "GATEWAY_STATE_DIR": tempfile.mkdtemp(prefix="gw-state-")}
    env.pop("GATEWAY_POLICIES", None)
    return subprocess.run([sys.executable, "-m", "sidecar", *args], cwd=REPO, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_check_on_the_demo_policies_prints_one_line_and_exits_0() -> None:
    result = sidecar("check", "policies")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"policies: OK (version {DEMO.version}): 1 token, 1 team, 2 models, 2 deployments, "
                             "3 guardrails, 3 limits; envoy config valid\n")
    assert result.stderr == ""


def test_check_prints_every_error_and_exits_1() -> None:
    result = sidecar("check", "--skip-envoy", "tests/policy_cases/files/many_errors")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    expected = (REPO / "tests/policy_cases/files/many_errors/expected.txt").read_text().splitlines()
    assert len(lines) == len(expected) + 1
    assert all(line.startswith("tests/policy_cases/files/many_errors/") for line in lines[:-1])
    assert lines[2] == ("tests/policy_cases/files/many_errors/models.yaml:9: models.gpt-4.deployments[0].provider: "
                        "unknown provider 'ghost' (defined: demo)")
    assert lines[-1] == "tests/policy_cases/files/many_errors: 6 errors"


def test_explain_an_allowed_request(tmp_path: Path) -> None:
    body = tmp_path / "request.json"
    body.write_text(json.dumps({**CHAT, "stream": True}))
    result = sidecar("explain", "--token", DEMO_TOKEN, "--body", str(body), "policies")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"policy      policies (version {DEMO.version})"
    assert lines[1].startswith("request     req_") and lines[1].endswith("(dry run: no provider called, no quota used)")
    assert lines[2:12] == [
        "token       demo (team demo-team)",
        "model       gpt-4 (llm) → demo/demo-gpt-4",
        "guardrails  none fired",
        "limits      estimate: prompt_tokens=9, completion_tokens=1024",
        "            completion_cap: 1024",
        "            applicable: limit=per-token.requests_per_minute, cap=1000000, used=0.0, requested=1, fits=True, "
        "shadow=False",
        "            applicable: limit=per-token.tokens_per_minute, cap=1000000000, used=0.0, requested=1033, "
        "fits=True, shadow=False",
        "            applicable: limit=per-token.tokens_per_month, cap=10000000000, used=0.0, requested=1033, "
        "fits=True, shadow=False",
        "breaker     demo/demo-gpt-4: closed",
        "status      200 allowed",
    ]
    assert lines[12:18] == [f"header      {name}" for name in (
        "x-ratelimit-limit-requests: 1000000", "x-ratelimit-limit-tokens: 1000000000",
        "x-ratelimit-remaining-requests: 1000000", "x-ratelimit-remaining-tokens: 1000000000",
        "x-ratelimit-reset-requests: 0ms", "x-ratelimit-reset-tokens: 0ms")]
    assert lines[18] == "provider    POST http://127.0.0.1:8090/v1/chat/completions"
    sent = json.loads("\n".join(lines[19:])[len("body"):])
    # The demo's tokens_per_minute limit counts tokens: the provider is held to the reserved allowance,
    # in the field a compatible server knows (max_tokens).
    assert sent == {"model": "demo-gpt-4", "messages": CHAT["messages"], "stream": True,
                    "stream_options": {"include_usage": True}, "max_tokens": 1024}


def test_explain_json_of_a_denied_request(tmp_path: Path) -> None:
    body = tmp_path / "request.json"
    body.write_text(json.dumps({**CHAT, "model": "gpt-5"}))
    result = sidecar("explain", "--token", DEMO_TOKEN, "--body", str(body), "--json", "policies")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision.pop("request_id").startswith("req_")
    assert decision == {
        "policy_version": DEMO.version, "policy_source": "policies", "status": 404, "allowed": False,
        "code": "model_not_found", "dry_run": True, "token": {"name": "demo", "team": "demo-team"},
        "model": None, "requested_model": "gpt-5", "endpoint": "chat", "stream": False, "headers": {}, "provider_url": None,
        "extra": {}, "guardrails": None, "limits": None, "breaker": None, "other_findings": {},
        "body": {"error": {"message": "The model 'gpt-5' does not exist", "type": "invalid_request_error",
                           "code": "model_not_found", "param": "model"}},
    }


def test_explain_by_token_name_from_stdin_and_unknown_token() -> None:
    result = sidecar("explain", "--token-name", "demo", "--body", "-", "--json", "policies", stdin=json.dumps(CHAT))
    assert (result.returncode, json.loads(result.stdout)["status"]) == (0, 200)
    result = sidecar("explain", "--token", "cgt_nobody", "--body", "-", "policies", stdin=json.dumps(CHAT))
    assert result.returncode == 0
    assert "status      401 denied (invalid_api_key)" in result.stdout.splitlines()


def test_explain_refuses_an_invalid_policy_and_a_missing_body(tmp_path: Path) -> None:
    result = sidecar("explain", "--token-name", "demo", "--body", "-", "tests/policy_cases/tokens/unknown_key", stdin="{}")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "tests/policy_cases/tokens/unknown_key/tokens.yaml:5: tokens.demo.model: unknown key"
    result = sidecar("explain", "--token-name", "demo", "--body", str(tmp_path / "none.json"), "policies")
    assert result.returncode == 2
    assert "cannot read --body" in result.stderr


# ---- explain runs the installed stages, in dry-run mode --------------------------------------

class FakeQuota:
    """Stands in for a stateful stage: consumes only on a real request, reports in the trace."""

    def __init__(self, left: int) -> None:
        self.left = left

    async def __call__(self, check: Check) -> None:
        check.trace["guardrails"] = [{"guardrail": "pii", "category": "email", "action": "mask", "count": 1}]
        check.trace["limits"] = [{"limit": "team-daily", "remaining": self.left - 1, "window": "1d"}]
        check.trace["breaker"] = {"demo/demo-gpt-4": "closed"}
        if self.left <= 0:
            raise RateLimited("Daily limit reached", headers={"Retry-After": "60"})
        if not check.dry_run:
            self.left -= 1


def with_stage(stage: FakeQuota) -> AppFactory:
    def factory(settings: Settings, store: PolicyStore) -> web.Application:
        app = init_app(settings, store)
        app[PIPELINE] = DecisionPipeline([stage])
        return app
    return factory


@pytest.mark.parametrize("left", [5, 0])
async def test_explain_shows_what_stages_found_and_consumes_nothing(left: int) -> None:
    quota = FakeQuota(left)
    explanation = await explain(Settings(), DEMO, json.dumps(CHAT).encode(), token=DEMO_TOKEN,
                                app_factory=with_stage(quota))
    assert quota.left == left  # a dry run
    text = render(explanation).splitlines()
    assert text[4:7] == ["guardrails  guardrail=pii, category=email, action=mask, count=1",
                         f"limits      limit=team-daily, remaining={left - 1}, window=1d",
                         "breaker     demo/demo-gpt-4: closed"]
    if left:
        assert explanation.status == 200
    else:
        assert (explanation.status, explanation.code, explanation.headers) == (429, "rate_limit_exceeded",
                                                                               {"Retry-After": "60"})
        assert "header      Retry-After: 60" in text


async def test_explain_shows_the_masked_body_the_provider_would_get(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    for name in ("models.yaml", "tokens.yaml"):
        (folder / name).write_text((REPO / "policies" / name).read_text())
    (folder / "guardrails.yaml").write_text(
        "guardrails:\n  mask-mail:\n    type: pii\n    categories: [email]\n    action: mask\n")
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "write to jane@example.com"}]}
    explanation = await explain(Settings(), load_policy(folder), json.dumps(body).encode(),
                                token=f"Bearer {DEMO_TOKEN}")
    assert explanation.status == 200
    assert explanation.body["messages"] == [{"role": "user", "content": "write to [EMAIL_1]"}]
    assert explanation.trace["guardrails"] == [{"guardrail": "mask-mail", "action": "mask", "direction": "input",
                                                "category": "email", "message": "PII detected",
                                                "message_index": 0, "role": "user"}]
    assert "jane@example.com" not in render(explanation)


def test_token_new_prints_a_token_and_the_entry_that_accepts_it(tmp_path: Path) -> None:
    result = sidecar("token", "new", "--name", "billing-app", "--team", "billing", "--models", "gpt-4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    assert token.startswith("cgt_") and len(token) > 40
    entry = "\n".join(lines[lines.index("paste under `tokens:` in a policy file:") + 1:])
    assert entry == (f"  billing-app:\n    sha256: {hash_token(token)}\n    team: billing\n    models: [gpt-4]")
    # The printed entry is a valid policy that authenticates the printed token.
    shutil.copy(REPO / "policies" / "models.yaml", tmp_path / "models.yaml")
    (tmp_path / "tokens.yaml").write_text("tokens:\n" + entry + "\n", encoding="utf-8")
    record = load_policy(tmp_path).tokens.authenticate(f"Bearer {token}")
    assert (record.name, record.team, record.models) == ("billing-app", "billing", frozenset({"gpt-4"}))
    assert token not in (tmp_path / "tokens.yaml").read_text()
