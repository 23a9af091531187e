"""The signed decision header: round trip, and every way a forged or broken one is refused."""

from __future__ import annotations

import base64

import orjson
import pytest

from sidecar.callout.handoff import (
    DECISION_HEADER,
    Decision,
    DecisionKey,
    InvalidDecision,
    RejectedDecision,
    annotate,
    body_digest,
    decode,
    encode,
    verify,
)

KEY = b"k" * 32
DECISION = Decision(
    request_id="req_abc", token_name="demo", team="demo-team", model_key="gpt-4",
    deployments=("demo/demo-gpt-4", "backup/gpt-4"), stream=True, client_wants_usage=False,
    policy_version="0123456789ab", body_sha256=body_digest(b'{"model": "gpt-4"}'), expires_at=2_000_000_000.0,
    extra={"mask": ["email"], "n": 3},
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
    assert version == "v2"
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
        decode(f"v1.{payload}.{signature}", KEY)  # the format before the body digest and expiry


@pytest.mark.parametrize("header", ["v2", "v2.", "v2..", "garbage", "v2.payload", "..."])
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


# ---- what the decision binds: the exact body bytes and an expiry ------------------------------

BODY = b'{"model": "gpt-4"}'


def test_digest_is_the_hex_sha256_of_the_exact_bytes() -> None:
    assert body_digest(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert body_digest(BODY) != body_digest(BODY.replace(b": ", b":"))  # same JSON, other bytes


def test_verify_accepts_the_decided_body_before_expiry() -> None:
    verify(DECISION, BODY, now=DECISION.expires_at - 0.001)


@pytest.mark.parametrize("other", [
    b'{"model": "gpt-4", "max_tokens": 1000000}', b'{"model":"gpt-4"}', b"", BODY + b" "])
def test_verify_refuses_another_body(other: bytes) -> None:
    with pytest.raises(RejectedDecision) as rejected:
        verify(DECISION, other, now=0)
    assert rejected.value.code == "decision_body_mismatch"


def test_verify_refuses_an_expired_decision() -> None:
    with pytest.raises(RejectedDecision) as rejected:
        verify(DECISION, BODY, now=DECISION.expires_at + 0.001)
    assert rejected.value.code == "decision_expired"


def test_digest_and_expiry_are_signed() -> None:
    version, payload, signature = parts(encode(DECISION, KEY))
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"body_sha256": body_digest(b"{}")}, {"expires_at": 4_000_000_000.0}):
        forged = base64.urlsafe_b64encode(orjson.dumps({**data, **change})).rstrip(b"=").decode()
        with pytest.raises(InvalidDecision):
            decode(f"{version}.{forged}.{signature}", KEY)


# ---- typed annotations ----------------------------------------------------------------------

PAIR: DecisionKey[tuple[int, str]] = DecisionKey("pair", list, lambda v: (int(v[0]), str(v[1])))


def test_a_typed_key_round_trips_through_the_header() -> None:
    extra: dict[str, object] = {}
    annotate(extra, PAIR, (3, "x"))
    decision = Decision(request_id="r", token_name="t", team=None, model_key="m", deployments=(), stream=False,
                        client_wants_usage=False, policy_version="v", extra=extra)
    decoded = decode(encode(decision, KEY), KEY)
    value = decoded.get(PAIR)
    assert value == (3, "x")
    assert isinstance(value, tuple)
    assert decoded.get(DecisionKey("absent", str, str)) is None


def test_an_annotation_is_decoded_once_and_the_cache_stays_out_of_the_header() -> None:
    calls: list[object] = []

    def count(value: list[str]) -> tuple[str, ...]:
        calls.append(value)
        return tuple(value)

    masks: DecisionKey[tuple[str, ...]] = DecisionKey("mask", list, count)
    decision = decode(encode(DECISION, KEY), KEY)
    assert decision.get(masks) == ("email",)
    assert decision.get(masks) == ("email",)
    assert calls == [["email"]]
    assert decision == DECISION  # the cache is no field: equality and the header are unchanged
    assert decode(encode(decision, KEY), KEY) == DECISION
    assert b"_decoded" not in base64.urlsafe_b64decode(parts(encode(decision, KEY))[1] + "==")
