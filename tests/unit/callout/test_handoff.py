"""The signed decision header: round trip, and every way a forged or broken one is refused."""

from __future__ import annotations

import base64

import orjson
import pytest

from sidecar.callout.handoff import DECISION_HEADER, Decision, InvalidDecision, decode, encode

KEY = b"k" * 32
DECISION = Decision(
    request_id="req_abc", token_name="demo", team="demo-team", model_key="gpt-4",
    deployments=("demo/demo-gpt-4", "backup/gpt-4"), stream=True, client_wants_usage=False,
    policy_version="0123456789ab", extra={"mask": ["email"], "n": 3},
)


def parts(header: str) -> tuple[str, str, str]:
    version, payload, signature = header.split(".")
    return version, payload, signature


def test_header_name() -> None:
    assert DECISION_HEADER == "x-cgt-decision"


def test_round_trip() -> None:
    assert decode(encode(DECISION, KEY), KEY) == DECISION


def test_round_trip_keeps_tuple_and_optional_fields() -> None:
    decision = Decision(request_id="r", token_name="t", team=None, model_key="m", deployments=(),
                        stream=False, client_wants_usage=True, policy_version="v")
    decoded = decode(encode(decision, KEY), KEY)
    assert decoded == decision
    assert isinstance(decoded.deployments, tuple)


def test_encoded_form_is_header_safe() -> None:
    header = encode(DECISION, KEY)
    version, payload, signature = parts(header)
    assert version == "v1"
    assert len(signature) == 24  # 18 bytes of HMAC-SHA256, base64
    assert "=" not in payload
    assert header.isascii() and " " not in header
    padded = payload + "=" * (-len(payload) % 4)
    assert orjson.loads(base64.urlsafe_b64decode(padded))["model_key"] == "gpt-4"


def test_encoding_is_deterministic() -> None:
    assert encode(DECISION, KEY) == encode(DECISION, KEY)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header(header: str | None) -> None:
    with pytest.raises(InvalidDecision, match="missing decision"):
        decode(header, KEY)


def test_wrong_key() -> None:
    with pytest.raises(InvalidDecision, match="bad decision signature"):
        decode(encode(DECISION, KEY), b"x" * 32)


def test_tampered_payload() -> None:
    version, payload, signature = parts(encode(DECISION, KEY))
    forged = base64.urlsafe_b64encode(orjson.dumps({**orjson.loads(base64.urlsafe_b64decode(
        payload + "=" * (-len(payload) % 4))), "model_key": "gpt-5"})).rstrip(b"=").decode()
    with pytest.raises(InvalidDecision):
        decode(f"{version}.{forged}.{signature}", KEY)


def test_one_flipped_payload_character() -> None:
    version, payload, signature = parts(encode(DECISION, KEY))
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    with pytest.raises(InvalidDecision):
        decode(f"{version}.{flipped}.{signature}", KEY)


def test_tampered_signature() -> None:
    version, payload, signature = parts(encode(DECISION, KEY))
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidDecision):
        decode(f"{version}.{payload}.{flipped}", KEY)


def test_wrong_version() -> None:
    _, payload, signature = parts(encode(DECISION, KEY))
    with pytest.raises(InvalidDecision):
        decode(f"v2.{payload}.{signature}", KEY)


@pytest.mark.parametrize("header", ["v1", "v1.", "v1..", "garbage", "v1.payload", "..."])
def test_malformed_headers(header: str) -> None:
    with pytest.raises(InvalidDecision):
        decode(header, KEY)


def test_signature_of_another_decision_does_not_transfer() -> None:
    other = Decision(**{**DECISION.__dict__, "token_name": "someone-else"})
    _, payload, _ = parts(encode(other, KEY))
    _, _, signature = parts(encode(DECISION, KEY))
    with pytest.raises(InvalidDecision):
        decode(f"v1.{payload}.{signature}", KEY)


def test_non_ascii_signature_is_invalid_decision() -> None:
    version, payload, _ = parts(encode(DECISION, KEY))
    with pytest.raises(InvalidDecision):
        decode(f"{version}.{payload}.é", KEY)
