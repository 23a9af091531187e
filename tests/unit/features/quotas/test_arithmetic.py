"""Estimates, calendar windows and header formats: the small arithmetic quotas rest on."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from sidecar.core.chat import parse_chat_request
from sidecar.core.limits import LimitsPolicy, ModelQuotaSettings
from sidecar.features.quotas.estimate import estimate_request, prompt_tokens
from sidecar.features.quotas.headers import openai_duration, retry_after
from sidecar.features.quotas.windows import current_window

BERLIN = ZoneInfo("Europe/Berlin")


def test_prompt_estimate_is_chars_over_four_plus_framing() -> None:
    body = {"messages": [{"role": "system", "content": "x" * 40},
                         {"role": "user", "content": [{"type": "text", "text": "y" * 20},
                                                      {"type": "image_url", "image_url": {"url": "u"}}]}]}
    assert prompt_tokens(body, 4.0) == 15 + 2 * 4 + 3 + 85


def test_tool_calls_and_tool_definitions_count() -> None:
    call = {"role": "assistant", "tool_calls": [{"id": "1", "type": "function",
                                                 "function": {"name": "abcd", "arguments": "{}" * 6}}]}
    assert prompt_tokens({"messages": [call]}, 4.0) == 4 + 4 + 3
    assert prompt_tokens({"messages": [], "tools": [{"type": "function"}]}, 4.0) == 6 + 3


def test_functions_response_schema_and_prediction_count_and_tool_texts_only_once() -> None:
    functions = [{"name": "f", "description": "d" * 9}]  # 40 characters of JSON
    schema = {"type": "json_schema", "json_schema": {"name": "s", "description": "x" * 11}}  # its json_schema: 40
    prediction = {"type": "content", "content": [{"type": "text", "text": "p" * 8}]}
    assert prompt_tokens({"messages": [], "functions": functions}, 4.0) == 10 + 3
    assert prompt_tokens({"messages": [], "response_format": schema}, 4.0) == 10 + 3
    assert prompt_tokens({"messages": [], "prediction": prediction}, 4.0) == 2 + 3
    # A tool's description is in its JSON already: the walker's definition texts do not count it twice.
    tools = [{"type": "function", "function": {"name": "f", "description": "d" * 40}}]
    parts = {"role": "user", "content": [{"type": "text", "text": "abcd"}]}
    assert prompt_tokens({"messages": [parts], "tools": tools}, 1.0) == 4 + len(orjson.dumps(tools)) + 4 + 3


def test_every_text_the_walker_yields_counts() -> None:
    # refusal (8), legacy function_call name + arguments (4 + 12), function result content (8) and name (4).
    messages = [{"role": "assistant", "content": None, "refusal": "r" * 8},
                {"role": "assistant", "content": None, "function_call": {"name": "abcd", "arguments": "{}" * 6}},
                {"role": "function", "name": "abcd", "content": "x" * 8}]
    assert prompt_tokens({"messages": messages}, 4.0) == 9 + 3 * 4 + 3


@pytest.mark.parametrize(("extra", "completion"), [
    ({"max_tokens": 50}, 50), ({"max_completion_tokens": 70, "max_tokens": 70}, 70), ({}, 300),
    ({"max_tokens": 50, "n": 3}, 150), ({"n": 2}, 600)])
def test_completion_allowance(extra: dict[str, int], completion: int) -> None:
    request = parse_chat_request(b'{"model": "gpt-4", "messages": [{"role": "user", "content": "abcd"}]'
                                 + b"".join(f', "{k}": {v}'.encode() for k, v in extra.items()) + b"}")
    limits = LimitsPolicy(models={"gpt-4": ModelQuotaSettings(completion_tokens=300)})
    estimate = estimate_request(request, "gpt-4", limits)
    assert (estimate.prompt_tokens, estimate.completion_tokens) == (1 + 4 + 3, completion)


def test_daily_windows_follow_the_local_calendar() -> None:
    late = datetime(2026, 3, 28, 23, 30, tzinfo=BERLIN).timestamp()
    window = current_window("day", BERLIN, late)
    assert window.id == "d2026-03-28"
    assert window.end == datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN).timestamp()
    # 29 March 2026 has 23 hours in Berlin (clocks go forward).
    following = current_window("day", BERLIN, window.end)
    assert following.id == "d2026-03-29" and following.end - window.end == 23 * 3600


def test_monthly_windows_end_on_the_first() -> None:
    window = current_window("month", BERLIN, datetime(2026, 12, 31, 23, 59, tzinfo=BERLIN).timestamp())
    assert window.id == "m2026-12"
    assert window.end == datetime(2027, 1, 1, tzinfo=BERLIN).timestamp()
    utc = current_window("month", ZoneInfo("UTC"), datetime(2026, 12, 31, 23, 59, tzinfo=BERLIN).timestamp())
    assert utc.id == "m2026-12"


@pytest.mark.parametrize(("seconds", "text"), [
    (0.02, "20ms"), (1.0, "1s"), (1.5, "1.5s"), (360.0, "6m0s"), (7384.0, "2h3m4s"), (59.9999, "1m0s")])
def test_openai_duration_format(seconds: float, text: str) -> None:
    assert openai_duration(seconds) == text


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert (retry_after(0.01), retry_after(1.0), retry_after(1.2)) == ("1", "1", "2")
