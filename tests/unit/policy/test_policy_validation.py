"""Every policy failure mode, one fixture folder each under tests/policy_cases/<section>/<mode>/.

`<section>` is a policy section (tokens, providers, models, breaker, guardrails, limits) or `files`
for what goes wrong with files as a whole (YAML syntax, unknown or repeated sections, several
sections at once). Each folder's expected.txt holds the exact error lines, relative to the folder
(`DIR` stands for the folder itself, `{sections}` for the list of known sections, which grows with
features).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sidecar.policy.loader import SECTIONS, load_policy
from sidecar.policy.reader import ErrorLog, Located, PolicyError
from sidecar.policy.references import check_reference, teams_of

CASES = Path(__file__).resolve().parents[2] / "policy_cases"
FILES = "files"
CASE_NAMES = sorted(f"{p.parent.name}/{p.name}" for p in CASES.glob("*/*") if p.is_dir())


def expected_errors(case: Path) -> list[str]:
    text = (case / "expected.txt").read_text(encoding="utf-8")
    return text.replace("{sections}", ", ".join(SECTIONS)).splitlines()


def relative(errors: list[str], case: Path) -> list[str]:
    return [e.replace(f"{case}/", "").replace(str(case), "DIR") for e in errors]


def test_there_is_a_fixture_for_each_failure_mode() -> None:
    assert len(CASE_NAMES) >= 75
    assert {"tokens/duplicate_key", "tokens/unknown_key", "tokens/wrong_type", "providers/bad_duration",
            "tokens/unknown_model", "models/unknown_provider", "files/empty_file", "files/top_level_not_mapping",
            "files/many_errors"} <= set(CASE_NAMES)


def test_every_section_has_its_failure_modes() -> None:
    sections = sorted(p.name for p in CASES.iterdir() if p.is_dir())
    assert sections == sorted((*SECTIONS, FILES))  # a new section comes with its own folder
    counts = {section: sum(name.startswith(f"{section}/") for name in CASE_NAMES) for section in sections}
    assert all(count >= 4 for count in counts.values()), counts
    assert min(counts["guardrails"], counts["limits"], counts["breaker"]) >= 7, counts


def test_each_section_folder_holds_its_own_section() -> None:
    for name in CASE_NAMES:
        section, _ = name.split("/")
        if section != FILES:
            assert any(line.split(": ")[1].startswith((section, f"providers.demo.{section}"))
                       for line in expected_errors(CASES / name)), name


@pytest.mark.parametrize("name", CASE_NAMES)
def test_failure_mode_is_reported_with_file_and_line(name: str) -> None:
    case = CASES / name
    with pytest.raises(PolicyError) as caught:
        load_policy(case)
    assert relative(caught.value.errors, case) == expected_errors(case)
    assert str(caught.value) == "\n".join(caught.value.errors)
    for error in caught.value.errors:
        assert re.match(rf"^{re.escape(str(case))}(/[\w.-]+\.yaml:\d+: \S+|): ", error), error


def test_errors_of_several_files_come_in_one_run_file_by_file() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(CASES / "files" / "many_errors")
    files = [e.split(":")[0].rsplit("/", 1)[1] for e in caught.value.errors]
    assert files == ["extra.yaml", "models.yaml", "models.yaml", "tokens.yaml", "tokens.yaml", "tokens.yaml"]


def test_a_broken_provider_is_not_reported_again_at_each_deployment() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(CASES / "providers" / "bad_provider_type")
    assert len(caught.value.errors) == 1
    assert "unknown provider" not in caught.value.errors[0]


def test_azure_api_version_written_as_a_bare_date_loads(tmp_path: Path) -> None:
    (tmp_path / "az.yaml").write_text(
        "providers:\n  az:\n    type: azure\n    base_url: https://az.test/openai\n    api_version: 2024-06-01\n"
        "models:\n  m:\n    deployments: [{provider: az, model: dep}]\n")
    policy = load_policy(tmp_path)
    assert policy.models.routes["m"].deployments[0].api_version == "2024-06-01"


def test_env_reference_with_a_default_loads_when_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLICY_CASES_UNSET_URL", raising=False)
    (tmp_path / "p.yaml").write_text(
        "providers:\n  p: {type: openai, base_url: '${POLICY_CASES_UNSET_URL:-http://x.test/v1}'}\n"
        "models:\n  m:\n    deployments: [{provider: p, model: up}]\n")
    assert load_policy(tmp_path).models.routes["m"].deployments[0].base_url == "http://x.test/v1"


def located(text: str) -> tuple[Located, ErrorLog]:
    log = ErrorLog()
    node = yaml.compose(text)
    assert node is not None
    return Located("f.yaml", node, "guardrails.custom.pattern", log), log


def test_invalid_regex_is_an_error_with_its_line() -> None:
    where, log = located("\n'(unclosed'\n")
    assert where.as_regex() is None
    assert log.errors == ["f.yaml:2: guardrails.custom.pattern: not a valid regular expression: "
                          "missing ), unterminated subpattern at position 0"]


def test_valid_regex_compiles() -> None:
    where, log = located(r"'\bsk-[a-z]+'")
    pattern = where.as_regex()
    assert pattern is not None and pattern.search("key sk-abc") is not None
    assert log.errors == []


def test_unknown_team_reference_wording(tmp_path: Path) -> None:
    policy = load_policy(CASES.parent.parent / "policies")
    where, log = located("\n\nplatform\n")
    assert check_reference(where, "team", "platform", teams_of(policy.tokens)) is False
    assert check_reference(where, "team", "demo-team", teams_of(policy.tokens)) is True
    assert log.errors == ["f.yaml:3: guardrails.custom.pattern: unknown team 'platform' (defined: demo-team)"]
