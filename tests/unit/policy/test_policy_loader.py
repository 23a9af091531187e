"""load_policy on fixture folders: exact `FILE:LINE: key.path: message` errors, all in one run."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sidecar.core.credentials import Credential
from sidecar.core.routes import ModelRegistry, Timeouts
from sidecar.core.tokens import TokenStore
from sidecar.policy.loader import load_policy, policy_files
from sidecar.policy.reader import PolicyError
from sidecar.policy.snapshot import Policy
from sidecar.policy.store import PolicyStore

CASES = Path(__file__).resolve().parents[2] / "policy_cases"
DEMO_POLICIES = Path(__file__).resolve().parents[3] / "policies"
ENV_DEFAULT = """\
providers:
  p:
    type: openai
    base_url: ${UNIT_TEST_PROVIDER_URL:-http://default.test/v1}
models:
  m:
    deployments:
      - provider: p
        model: up-m
"""
DEMO_HASH = "0fb023c22f098f6159890cb1c5b5ab288be329d09ffe6743a0b7942e0866a850"


def env_default(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(ENV_DEFAULT)
    return tmp_path


# ---- the demo policy -------------------------------------------------------------------------

def test_demo_policies_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_DEMO_PROVIDER_URL", raising=False)
    policy = load_policy(DEMO_POLICIES)
    assert policy.source == str(DEMO_POLICIES)
    assert len(policy.version) == 12
    assert {key: route.category for key, route in policy.models.routes.items()} == {
        "gpt-4": "llm", "text-embedding-3-small": "embedding",
    }
    gpt4 = policy.models.resolve_llm("gpt-4")
    (deployment,) = gpt4.deployments
    assert deployment.name == "demo/demo-gpt-4"
    assert (deployment.provider, deployment.upstream_model) == ("openai", "demo-gpt-4")
    assert deployment.base_url == "http://127.0.0.1:8090/v1"
    assert deployment.timeouts == Timeouts(connect=2.0, first_byte=60.0, idle=60.0, total=600.0)
    assert list(policy.tokens.by_hash) == [DEMO_HASH]
    token = policy.tokens.by_hash[DEMO_HASH]
    assert (token.name, token.team, token.expires) == ("demo", "demo-team", None)
    assert token.models == frozenset({"gpt-4", "text-embedding-3-small"})
    # The token printed in the policy's comment really is the one the hash stands for.
    assert policy.tokens.authenticate("Bearer cgt_demo_Jm3kQ8vYx2LrT9pWn4HsZ6bC1dF7gK0a") is token


def test_not_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(PolicyError) as caught:
        load_policy(missing)
    assert caught.value.errors == [f"{missing}: not a directory"]


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    # An emptied ConfigMap must not hot-reload into a gateway that knows no tokens or models.
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert caught.value.errors == [f"{tmp_path}: no policy files (*.yaml, *.yml)"]


def test_policy_files_skip_hidden_and_other_suffixes(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", ".hidden.yaml", "notes.txt"):
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "..data").mkdir()
    (tmp_path / "dir.yaml").mkdir()
    assert [p.name for p in policy_files(tmp_path)] == ["a.yaml", "b.yml"]


# ---- failure modes: one folder each under tests/policy_cases/<section>/<mode>/ (test_policy_validation)

def test_null_deployments_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("providers:\n  p: {type: openai, base_url: 'http://x.test'}\nmodels:\n  m:\n    deployments:\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert f"{path}:5: models.m.deployments: must list at least one deployment" in caught.value.errors


def test_errors_from_several_files_reported_together(tmp_path: Path) -> None:
    shutil.copy(CASES / "tokens" / "bad_expiry_tokens_only" / "tokens.yaml", tmp_path / "tokens.yaml")
    shutil.copy(CASES / "providers" / "bad_provider_type_no_models" / "policy.yaml", tmp_path / "policy.yaml")
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert caught.value.errors == [
        f"{tmp_path / 'policy.yaml'}:3: providers.p.type: must be one of anthropic, azure, openai",
        f"{tmp_path / 'tokens.yaml'}:4: tokens.t.expires: must be a date or timestamp such as "
        "2027-01-31 or 2027-01-31T12:00:00Z",
    ]


# ---- values that load ------------------------------------------------------------------------

def test_env_expansion_in_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIT_TEST_PROVIDER_URL", "http://from-env.test/v1")
    (deployment,) = load_policy(env_default(tmp_path)).models.routes["m"].deployments
    assert deployment.base_url == "http://from-env.test/v1"


def test_env_default_when_variable_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNIT_TEST_PROVIDER_URL", raising=False)
    (deployment,) = load_policy(env_default(tmp_path)).models.routes["m"].deployments
    assert deployment.base_url == "http://default.test/v1"


def test_env_default_when_variable_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIT_TEST_PROVIDER_URL", "")
    (deployment,) = load_policy(env_default(tmp_path)).models.routes["m"].deployments
    assert deployment.base_url == "http://default.test/v1"


def test_full_provider_and_token_fields(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(f"""\
providers:
  az:
    type: azure
    base_url: https://az.test/openai
    api_version: '2024-06-01'
    api_key: {{file: /run/secrets/az}}
    headers: {{x-team: blue}}
    timeouts: {{connect: 250ms, first_byte: 30, idle: 5m, total: 1h}}
models:
  gpt-4o:
    deployments:
      - {{provider: az, model: gpt-4o-2024, default_max_tokens: 100}}
tokens:
  t:
    sha256: {DEMO_HASH}
    team: blue
    models: [gpt-4o]
    expires: 2027-01-31
""")
    policy = load_policy(tmp_path)
    route = policy.models.resolve_llm("gpt-4o")
    (deployment,) = route.deployments
    assert deployment.name == "az/gpt-4o-2024"
    assert (deployment.provider, deployment.api_version, deployment.default_max_tokens) == ("azure", "2024-06-01", 100)
    assert deployment.credential == Credential(file=Path("/run/secrets/az"))
    assert dict(deployment.headers) == {"x-team": "blue"}
    assert deployment.timeouts == Timeouts(connect=0.25, first_byte=30.0, idle=300.0, total=3600.0)
    token = policy.tokens.by_hash[DEMO_HASH]
    assert token.expires == datetime(2027, 2, 1, tzinfo=UTC)  # a date is the last day the token works
    assert (token.team, token.models) == ("blue", frozenset({"gpt-4o"}))


def test_azure_api_version_written_as_a_bare_date_loads(tmp_path: Path) -> None:
    (tmp_path / "az.yaml").write_text(
        "providers:\n  az:\n    type: azure\n    base_url: https://az.test/openai\n    api_version: 2024-06-01\n"
    )
    load_policy(tmp_path)


# ---- versions and the store ------------------------------------------------------------------

def _copy_demo(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(DEMO_POLICIES, folder)
    return folder


def test_version_stays_when_nothing_changes(tmp_path: Path) -> None:
    folder = _copy_demo(tmp_path)
    assert load_policy(folder).version == load_policy(folder).version


def test_version_does_not_depend_on_the_folder_path(tmp_path: Path) -> None:
    assert load_policy(_copy_demo(tmp_path)).version == load_policy(DEMO_POLICIES).version


def test_version_changes_when_a_file_changes(tmp_path: Path) -> None:
    folder = _copy_demo(tmp_path)
    before = load_policy(folder).version
    tokens = folder / "tokens.yaml"
    tokens.write_text(tokens.read_text().replace("team: demo-team", "team: other-team"))
    after = load_policy(folder)
    assert after.version != before
    assert len(after.version) == 12
    assert after.tokens.by_hash[DEMO_HASH].team == "other-team"


def test_version_changes_when_a_file_is_added(tmp_path: Path) -> None:
    folder = _copy_demo(tmp_path)
    guardrails = (folder / "guardrails.yaml").read_text()
    (folder / "guardrails.yaml").unlink()
    before = load_policy(folder).version
    (folder / "zz-guardrails.yaml").write_text(guardrails)
    assert load_policy(folder).version != before


def _policy(version: str) -> Policy:
    return Policy(version=version, source="test", tokens=TokenStore({}), models=ModelRegistry({}))


def test_store_swap_makes_the_new_policy_current() -> None:
    first, second = _policy("v1"), _policy("v2")
    store = PolicyStore(first)
    assert store.current is first
    store.swap(second)
    assert store.current is second
    assert store.get("v1") is first
    assert store.get("v2") is second


def test_store_get_of_an_unknown_version_is_none() -> None:
    # Never the current policy in its place: a decision applies only under the policy it was made on.
    store = PolicyStore(_policy("v1"))
    store.swap(_policy("v2"))
    assert store.get("never-seen") is None


def test_store_keeps_the_eight_most_recent_versions() -> None:
    policies = [_policy(f"v{i}") for i in range(10)]
    store = PolicyStore(policies[0])
    for policy in policies[1:]:
        store.swap(policy)
    # v0 and v1 were evicted: they are unknown now.
    assert store.get("v0") is None
    assert store.get("v1") is None
    for policy in policies[2:]:
        assert store.get(policy.version) is policy


def test_store_swap_back_to_an_old_version_refreshes_it() -> None:
    policies = [_policy(f"v{i}") for i in range(9)]
    store = PolicyStore(policies[0])
    for policy in policies[1:8]:
        store.swap(policy)
    store.swap(policies[0])  # v0 again: now the most recent, not the oldest
    store.swap(policies[8])  # evicts the oldest, which is now v1
    assert store.get("v0") is policies[0]
    assert store.get("v1") is None


@pytest.mark.parametrize(("written", "expires"), [
    ("2027-01-31", datetime(2027, 2, 1, tzinfo=UTC)),  # works all of 31 January (UTC)
    ("2027-12-31", datetime(2028, 1, 1, tzinfo=UTC)),
    ("2027-01-31T12:00:00Z", datetime(2027, 1, 31, 12, tzinfo=UTC)),  # a timestamp is the exact moment
    ("2027-01-31 12:00:00", datetime(2027, 1, 31, 12, tzinfo=UTC)),  # without a zone: UTC
    ('"2027-01-31"', datetime(2027, 2, 1, tzinfo=UTC)),  # quoted (or from ${VAR}): read alike
    ("'2027-01-31T12:00:00Z'", datetime(2027, 1, 31, 12, tzinfo=UTC)),
    ('"2027-01-31T14:00:00+02:00"', datetime(2027, 1, 31, 12, tzinfo=UTC)),
])
def test_token_expiry_of_a_date_and_of_a_timestamp(tmp_path: Path, written: str, expires: datetime) -> None:
    (tmp_path / "tokens.yaml").write_text(f"tokens:\n  t:\n    sha256: {DEMO_HASH}\n    expires: {written}\n")
    assert load_policy(tmp_path).tokens.by_hash[DEMO_HASH].expires == expires
