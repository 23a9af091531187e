"""A provider's reported token usage: untrusted input, checked by one rule for every endpoint.

The counts settle quotas, price spend and feed the metrics, so a count the gateway cannot believe
(negative, a bool, a float, a string, or beyond any real answer) must never reach them: one
answer claiming -1,000,000 tokens would give a day's budget back. `checked_usage` accepts
OpenAI's usage object (Chat Completions API reference: `usage.prompt_tokens`,
`usage.completion_tokens`, `usage.total_tokens`; embeddings report no completion) and refuses
anything else with `UsageRefused`, whose caller settles by estimate instead.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from sidecar.core.types import Usage

# Exclusive bound per count: no answer comes near 2**31 tokens (context windows are ~10**6), and
# an int32 is what several providers' own counters are.
TOKEN_COUNT_LIMIT = 2**31


class UsageRefused(ValueError):
    """A usage object was present but its counts are not believable; the message says which and why."""


def is_token_count(value: Any) -> TypeGuard[int]:
    """True for an int (not a bool) in 0 <= value < TOKEN_COUNT_LIMIT."""
    return type(value) is int and 0 <= value < TOKEN_COUNT_LIMIT


def checked_usage(value: Any, *, completion: bool = True) -> Usage | None:
    """`value` (a provider's `usage`) as Usage; None when the provider reported none (absent, null,
    or an object with neither count). `completion=False` for embeddings: `completion_tokens` is
    not read and is 0.

    Raises UsageRefused when a count is missing beside the other, is not a token count
    (`is_token_count`), or `total_tokens`, when given, is not one or is less than the sum
    (a larger total is accepted: some providers count tokens, such as reasoning, outside the parts).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UsageRefused(f"usage is not an object: {_shown(value)}")
    prompt = value.get("prompt_tokens")
    used = value.get("completion_tokens") if completion else None
    if prompt is None and used is None:
        return None
    if not completion:
        used = 0
    if not is_token_count(prompt):
        raise UsageRefused(f"usage.prompt_tokens is not a token count: {_shown(prompt)}")
    if not is_token_count(used):
        raise UsageRefused(f"usage.completion_tokens is not a token count: {_shown(used)}")
    total = value.get("total_tokens")
    if total is not None and (not is_token_count(total) or total < prompt + used):
        raise UsageRefused(f"usage.total_tokens {_shown(total)} does not add up to prompt_tokens {prompt}"
                           f" + completion_tokens {used}")
    return Usage(prompt_tokens=prompt, completion_tokens=used)


def _shown(value: Any) -> str:
    """The value for a log line, cut short (a provider may send anything)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
