from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.entity import ALL_CATEGORIES
from sidecar.features.guardrails.quality import OVERALL, evaluate, evaluate_injection, make_score
from sidecar.features.guardrails.quality import mismatches as explain

CORPUS = Path(__file__).resolve().parents[3] / "guardrails_corpus"


def load(name: str) -> list[dict[str, Any]]:
    with (CORPUS / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    return load("cases.jsonl")


@pytest.fixture(scope="module")
def injection_cases() -> list[dict[str, Any]]:
    return load("injection.jsonl")


def test_corpus_shape(cases: list[dict[str, Any]], injection_cases: list[dict[str, Any]]) -> None:
    assert len(cases) >= 300
    assert len(injection_cases) >= 80
    categories = {item["category"] for case in cases for item in case["expect"]}
    assert categories == ALL_CATEGORIES
    assert sum(1 for case in cases if not case["expect"]) >= 100  # hard negatives
    assert any(case["label"] for case in injection_cases)
    assert any(not case["label"] for case in injection_cases)


def test_overall_and_per_category_quality(cases: list[dict[str, Any]]) -> None:
    scores = evaluate(cases)
    assert scores[OVERALL].recall >= 0.95, explain(cases)
    assert scores[OVERALL].precision >= 0.97, explain(cases)
    for category in ALL_CATEGORIES:
        assert scores[category].recall >= 0.9, (category, scores[category])
        assert scores[category].precision >= 0.9, (category, scores[category])


def test_injection_quality(injection_cases: list[dict[str, Any]]) -> None:
    at_half = evaluate_injection(injection_cases, 0.5)
    at_seven = evaluate_injection(injection_cases, 0.7)
    assert at_half.precision >= 0.9 and at_half.recall >= 0.8
    assert at_seven.precision >= 0.9 and at_seven.recall >= 0.6
    assert at_seven.recall <= at_half.recall  # a stricter threshold never finds more


def test_evaluate_counts_tp_fp_fn_exactly() -> None:
    cases: list[dict[str, Any]] = [
        {"text": "mail a@example.com", "expect": [{"category": "email", "value": "a@example.com"}]},
        {"text": "mail b@example.com", "expect": []},
        {"text": "nothing", "expect": [{"category": "phone", "value": "(415) 555-0132"}]},
        {"text": "mail c@example.com", "expect": [{"category": "phone", "value": "c@example.com"}]},
    ]
    scores = evaluate(cases)
    assert scores["email"] == make_score(1, 2, 0)
    assert scores["phone"] == make_score(0, 0, 2)
    assert scores[OVERALL][:3] == (1, 2, 2)


def test_make_score_empty_denominators() -> None:
    assert make_score(0, 0, 0) == (0, 0, 0, 1.0, 1.0)
