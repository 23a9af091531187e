"""Which guardrails apply to a request: computed once per policy snapshot, identical to the filter."""

from __future__ import annotations

import itertools
from pathlib import Path

from sidecar.core.guardrail_webhook import WebhookConfig
from sidecar.policy import guardrails as guardrail_policy
from sidecar.policy.guardrails import Action, Direction, Guardrail, GuardrailSet, GuardrailType, Scope
from sidecar.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[3]


def plain_filter(guardrails: GuardrailSet, model: str, token: str, team: str | None,
                 requested: frozenset[str]) -> tuple[Guardrail, ...]:
    return tuple(g for g in guardrails.guardrails
                 if (g.default_on or g.key in requested) and g.scope.matches(model, token, team))


def guardrail_set() -> GuardrailSet:
    webhook = WebhookConfig(url="http://127.0.0.1:9/check")
    return GuardrailSet((
        Guardrail("in", GuardrailType.PII, Action.BLOCK, Direction.INPUT, scope=Scope(models=frozenset({"a"}))),
        Guardrail("out", GuardrailType.PII, Action.MASK, Direction.OUTPUT, scope=Scope(tokens=frozenset({"t1"}))),
        Guardrail("both", GuardrailType.PATTERN, Action.LOG, Direction.BOTH, scope=Scope(teams=frozenset({"x"}))),
        Guardrail("opt", GuardrailType.PROMPT_INJECTION, Action.BLOCK, Direction.INPUT, default_on=False),
        Guardrail("hook", GuardrailType.WEBHOOK, Action.BLOCK, Direction.BOTH, webhook=webhook),
        Guardrail("size", GuardrailType.SIZE, Action.BLOCK, Direction.OUTPUT, max_chars=10),
    ))


def test_answers_match_the_plain_filter_and_are_split_by_runner() -> None:
    guardrails = guardrail_set()
    for model, token, team, requested in itertools.product(
            ("a", "b"), ("t1", "t2"), (None, "x", "y"), (frozenset(), frozenset({"opt"}))):
        for _ in range(2):  # the second answer comes from the cache
            found = guardrails.for_request(model, token, team, requested)
            expected = plain_filter(guardrails, model, token, team, requested)
            assert found.all == expected == guardrails.applicable(model, token, team, requested)
            assert found.checks_input == tuple(g for g in expected if g.checks_input)
            assert found.webhook_input == tuple(g for g in expected if g.webhook is not None and g.reads_input)
            assert found.checks_output == tuple(g for g in expected if g.checks_output)
            assert found.webhook_output == tuple(g for g in expected if g.calls_webhook_on_output)
    assert guardrails.keys() == frozenset({"in", "out", "both", "opt", "hook", "size"})


def test_a_reloaded_policy_answers_from_its_own_guardrails(tmp_path: Path) -> None:
    before = load_policy(REPO / "policies")
    assert [g.key for g in before.guardrails.for_request("gpt-4", "demo", "demo-team").all] == [
        "pii-checker", "prompt-guard", "pii-output-mask"]
    folder = tmp_path / "policies"
    folder.mkdir()
    for path in (REPO / "policies").glob("*.yaml"):
        text = path.read_text()
        (folder / path.name).write_text(text.replace("action: mask", "action: block"))
    after = load_policy(folder)
    output = after.guardrails.for_request("gpt-4", "demo", "demo-team").checks_output
    assert [(g.key, g.action) for g in output] == [("pii-output-mask", Action.BLOCK)]
    assert before.guardrails.for_request("gpt-4", "demo", "demo-team").checks_output[0].action is Action.MASK


def test_the_cache_is_bounded() -> None:
    guardrails = guardrail_set()
    limit = guardrail_policy.MAX_CACHED_SCOPES
    for number in range(limit + 10):
        assert guardrails.for_request("a", f"t{number}", None).all == plain_filter(
            guardrails, "a", f"t{number}", None, frozenset())
    assert len(guardrails._cache) == limit


def test_out_of_scope_names_the_requested_guardrails_whose_scope_leaves_the_request_out() -> None:
    guardrails = guardrail_set()
    everything = frozenset({"in", "out", "both", "opt", "hook"})
    assert guardrails.out_of_scope("b", "t2", None, everything) == ["both", "in", "out"]
    assert guardrails.out_of_scope("a", "t1", "x", everything) == []
    assert guardrails.out_of_scope("b", "t2", None, frozenset({"opt"})) == []  # no scope: applies everywhere
