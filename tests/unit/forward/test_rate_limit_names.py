"""The decision's record of the gateway's own rate-limit header names: compact on the wire, exact back."""

from __future__ import annotations

import orjson

from sidecar.callout.handoff import Decision, annotate, decode, encode
from sidecar.forward.exchange import OWN_RATE_LIMIT_HEADERS

KEY = b"k" * 32
SIX = frozenset(f"x-ratelimit-{what}-{unit}" for what in ("limit", "remaining", "reset")
                for unit in ("requests", "tokens"))


def _through_the_header(names: frozenset[str]) -> tuple[object, frozenset[str] | None]:
    extra: dict[str, object] = {}
    annotate(extra, OWN_RATE_LIMIT_HEADERS, names)
    decision = Decision(request_id="r", token_name="t", team=None, model_key="m", deployments=(), stream=False,
                        client_wants_usage=False, policy_version="v", extra=extra)
    return extra[OWN_RATE_LIMIT_HEADERS.name], decode(encode(decision, KEY), KEY).get(OWN_RATE_LIMIT_HEADERS)


def test_the_six_names_travel_as_one_short_string_and_come_back_whole() -> None:
    wire, back = _through_the_header(SIX)
    assert wire == ("limit-requests,limit-tokens,remaining-requests,remaining-tokens,reset-requests,reset-tokens")
    assert back == SIX
    assert len(orjson.dumps(wire)) < len(orjson.dumps(sorted(SIX))) * 0.6  # 93 bytes instead of 177


def test_a_name_without_the_prefix_and_no_names_round_trip() -> None:
    names = frozenset({"x-ratelimit-limit-requests", "retry-after"})
    wire, back = _through_the_header(names)
    assert wire == "/retry-after,limit-requests"
    assert back == names
    assert _through_the_header(frozenset())[1] == frozenset()
