"""core.usage: a provider's usage is checked by one rule (chat, streamed or whole, and embeddings)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.core.types import Usage
from sidecar.core.usage import TOKEN_COUNT_LIMIT, UsageRefused, checked_usage, is_token_count


@pytest.mark.parametrize(("value", "expected"), [
    (0, True), (7, True), (TOKEN_COUNT_LIMIT - 1, True),
    (-1, False), (TOKEN_COUNT_LIMIT, False), (True, False), (False, False), (3.0, False), ("3", False),
    (None, False),
])
def test_a_token_count_is_a_bounded_non_negative_int(value: object, expected: bool) -> None:
    assert is_token_count(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ({"prompt_tokens": 3, "completion_tokens": 4}, Usage(3, 4)),
    ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, Usage(3, 4)),
    # Some providers count reasoning tokens in the total only: a larger total is believed.
    ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9}, Usage(3, 4)),
    ({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": None}, Usage(0, 0)),
    (None, None), ({}, None), ({"total_tokens": 5}, None),
])
def test_believable_or_absent_usage(value: object, expected: Usage | None) -> None:
    assert checked_usage(value) == expected


@pytest.mark.parametrize(("value", "reason"), [
    ({"prompt_tokens": -1_000_000, "completion_tokens": -1_000_000}, "prompt_tokens is not a token count: -1000000"),
    ({"prompt_tokens": 5, "completion_tokens": -3}, "completion_tokens is not a token count: -3"),
    ({"prompt_tokens": True, "completion_tokens": 4}, "prompt_tokens is not a token count: True"),
    ({"prompt_tokens": 3, "completion_tokens": 4.0}, "completion_tokens is not a token count: 4.0"),
    ({"prompt_tokens": "3", "completion_tokens": 4}, "prompt_tokens is not a token count: '3'"),
    ({"prompt_tokens": 2**40, "completion_tokens": 4}, "prompt_tokens is not a token count"),
    ({"prompt_tokens": 3}, "completion_tokens is not a token count: None"),
    ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 6}, "total_tokens 6 does not add up"),
    ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": -7}, "total_tokens -7 does not add up"),
    ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": "7"}, "total_tokens '7' does not add up"),
    ([3, 4], "usage is not an object: [3, 4]"),
    ("x" * 200, "usage is not an object: 'xxx"),
])
def test_unbelievable_usage_is_refused(value: object, reason: str) -> None:
    with pytest.raises(UsageRefused) as refused:
        checked_usage(value)
    assert reason in str(refused.value)
    assert len(str(refused.value)) < 200  # a provider's value is cut short in the log line


@pytest.mark.parametrize(("value", "expected"), [
    ({"prompt_tokens": 7, "total_tokens": 7}, Usage(7, 0)),
    ({"prompt_tokens": 7, "completion_tokens": -5, "total_tokens": 7}, Usage(7, 0)),  # not read
    (None, None), ({}, None),
])
def test_embeddings_read_prompt_tokens_only(value: object, expected: Usage | None) -> None:
    assert checked_usage(value, completion=False) == expected


@pytest.mark.parametrize("value", [
    {"total_tokens": 7, "prompt_tokens": -1},
    {"prompt_tokens": True}, {"prompt_tokens": 7, "total_tokens": 6}, {"total_tokens": 7, "prompt_tokens": "7"},
])
def test_embeddings_usage_is_refused_like_chat(value: dict[str, Any]) -> None:
    with pytest.raises(UsageRefused):
        checked_usage(value, completion=False)
