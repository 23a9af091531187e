"""Precision/recall of the detectors against a labelled corpus.

Pure functions over already-parsed cases (the caller reads the JSONL), so
tests, the benchmark and CI can share them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from sidecar.core.entity import ALL_CATEGORIES

from .injection import score_injection
from .pii import find_entities

OVERALL = "overall"


class Score(NamedTuple):
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float


def make_score(tp: int, fp: int, fn: int) -> Score:
    # An empty denominator means "nothing to get wrong": report 1.0.
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return Score(tp, fp, fn, round(precision, 4), round(recall, 4))


def _case_counts(case: Mapping[str, Any]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Per-category (tp, fp, fn) for one case, matching values as multisets."""
    text: str = case["text"]
    found = Counter(
        (e.category, text[e.start : e.end]) for e in find_entities(text, ALL_CATEGORIES)
    )
    expected = Counter((item["category"], item["value"]) for item in case.get("expect", []))
    tp, fp, fn = Counter[str](), Counter[str](), Counter[str]()
    for (category, _), count in (found & expected).items():
        tp[category] += count
    for (category, _), count in (found - expected).items():
        fp[category] += count
    for (category, _), count in (expected - found).items():
        fn[category] += count
    return tp, fp, fn


def evaluate(cases: Iterable[Mapping[str, Any]]) -> dict[str, Score]:
    """Per-category and ``overall`` scores; a TP needs category and exact value."""
    tp, fp, fn = Counter[str](), Counter[str](), Counter[str]()
    for case in cases:
        case_tp, case_fp, case_fn = _case_counts(case)
        tp.update(case_tp)
        fp.update(case_fp)
        fn.update(case_fn)
    result = {c: make_score(tp[c], fp[c], fn[c]) for c in sorted(ALL_CATEGORIES)}
    result[OVERALL] = make_score(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return result


def mismatches(cases: Iterable[Mapping[str, Any]]) -> list[str]:
    """Human-readable list of misses and false alarms (for debugging the corpus)."""
    lines: list[str] = []
    for case in cases:
        text: str = case["text"]
        found = {(e.category, text[e.start : e.end]) for e in find_entities(text, ALL_CATEGORIES)}
        expected = {(item["category"], item["value"]) for item in case.get("expect", [])}
        for category, value in sorted(found - expected):
            lines.append(f"FP {category}: {value!r} in {text!r}")
        for category, value in sorted(expected - found):
            lines.append(f"FN {category}: {value!r} in {text!r}")
    return lines


def evaluate_injection(cases: Iterable[Mapping[str, Any]], threshold: float) -> Score:
    """Injection precision/recall: flagged when ``score >= threshold``."""
    tp = fp = fn = 0
    for case in cases:
        flagged = score_injection(case["text"]).score >= threshold
        label = bool(case["label"])
        tp += flagged and label
        fp += flagged and not label
        fn += label and not flagged
    return make_score(tp, fp, fn)
