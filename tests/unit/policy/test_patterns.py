from __future__ import annotations

import re

import pytest

from sidecar.policy.patterns import compile_patterns


def spans(text: str, deny: list[str], keywords: list[str], allow: list[str]) -> list[str]:
    matcher = compile_patterns(deny, keywords, allow)
    found = matcher.find(text)
    assert all(e.category == "pattern" for e in found)
    return [text[e.start : e.end] for e in found]


def test_deny_regex_and_allow_exemption() -> None:
    text = "tickets PROJ-123 and PROJ-000 are open"
    assert spans(text, [r"PROJ-[0-9]+"], [], [r"PROJ-000"]) == ["PROJ-123"]


def test_allow_regex_exempts_by_context() -> None:
    text = "internal-only: codename Falcon; public codename Falcon"
    assert spans(text, [], ["falcon"], [r"public codename \w+"]) == ["Falcon"]


def test_keywords_case_insensitive_whole_word() -> None:
    text = "Top Secret, secretary, SECRET. secrets"
    assert spans(text, [], ["secret", "top secret"], []) == ["Top Secret", "SECRET"]


def test_keywords_in_cjk_text() -> None:
    assert spans("这是机密文件，绝密secret文件", [], ["机密", "secret"], []) == ["机密", "secret"]


def test_keyword_special_characters_are_literal() -> None:
    assert spans("use c++ or c#, not c", [], ["c++", "c#"], []) == ["c++", "c#"]


def test_invalid_regex_raises_re_error_unchanged() -> None:
    with pytest.raises(re.error):
        compile_patterns(["(unclosed"], [], [])
    with pytest.raises(re.error):
        compile_patterns([], [], ["[bad"])


def test_empty_policy_and_empty_matches() -> None:
    assert compile_patterns([], [], []).find("anything") == []
    assert spans("abc", [r"x*"], [""], []) == []


def test_overlapping_deny_matches_resolve_to_longest() -> None:
    assert spans("alpha beta gamma", [r"alpha beta", r"beta gamma", r"alpha"], [], []) == ["alpha beta"]


@pytest.mark.parametrize(("text", "deny", "keywords", "expected"), [
    ("hello project falc", [], ["project falcon"], 6),  # a keyword begun: held from its first letter
    ("hello PROJECT fal", [], ["project falcon"], 6),  # keywords fold case for the partial match too
    ("hello project falcon", [], ["project falcon"], 20),  # complete: `find` reports it, nothing open
    ("the falcon is near the", [r"falcon.*plan"], [], 4),  # an unbounded regex begun
    ("the falcon plan is set", [r"falcon.*plan"], [], 22),
    ("(?i) on: Falcon x", [r"(?i)falcon x y"], [], 9),  # inline flags carry over
    ("nothing to see", [r"falcon"], ["secret"], 14),
    ("ends with p", [r"falcon"], ["project falcon"], 10),  # the shortest start wins
])
def test_open_at_is_where_a_match_more_text_could_complete_begins(text: str, deny: list[str], keywords: list[str],
                                                                 expected: int) -> None:
    assert compile_patterns(deny, keywords, []).open_at(text) == expected



@pytest.mark.parametrize("text", ["Project\nFalcon", "project  falcon", "PROJECT\t \nfalcon", "project\u00a0falcon"])
def test_a_space_in_a_keyword_matches_any_run_of_whitespace(text: str) -> None:
    assert spans(f"about {text}.", [], ["project falcon"], []) == [text]
    assert spans(f"about {text}.", [], ["  project falcon "], []) == [text]  # the keyword's own edges trimmed


def test_a_keyword_without_its_space_is_another_word() -> None:
    assert spans("projectfalcon and project-falcon", [], ["project falcon"], []) == []
