from __future__ import annotations

import base64
import json
import random
from itertools import pairwise

import pytest

from sidecar.core.entity import ALL_CATEGORIES, Entity, resolve_overlaps
from sidecar.features.guardrails.pii import find_entities


def found(text: str, categories: frozenset[str] = ALL_CATEGORIES) -> list[tuple[str, str]]:
    return [(e.category, text[e.start : e.end]) for e in find_entities(text, categories)]


def test_all_categories() -> None:
    assert frozenset({"email", "phone", "credit_card", "ssn", "iban", "ip_address", "secret"}) == ALL_CATEGORIES


def test_unknown_category_raises() -> None:
    with pytest.raises(ValueError, match="emial"):
        find_entities("x", frozenset({"emial"}))


def test_empty_categories_and_text() -> None:
    assert find_entities("john@example.com", frozenset()) == []
    assert find_entities("", ALL_CATEGORIES) == []


# --- CJK and other scripts ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("请联系john@example.com谢谢", [("email", "john@example.com")]),
        ("卡号4111111111111111", [("credit_card", "4111111111111111")]),
        ("电话13800138000", [("phone", "13800138000")]),
        ("문의는kim@example.kr로", [("email", "kim@example.kr")]),
        ("服务器地址10.0.0.1无法访问", [("ip_address", "10.0.0.1")]),
        ("收款账户DE89370400440532013000谢谢", [("iban", "DE89370400440532013000")]),
        ("社会安全号码123-45-6789", [("ssn", "123-45-6789")]),
    ],
)
def test_glued_to_cjk(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


def test_cn_mobile_needs_a_phone_cue() -> None:
    assert found("订单号13800138000已发货") == []
    assert found("手机：13912345678") == [("phone", "13912345678")]


def test_glued_to_ascii_letters_is_not_found() -> None:
    assert found("abc4111111111111111def") == []
    assert found("SKU 4111111111111111X") == []


# --- cards -------------------------------------------------------------------


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005", "4111111111111111"])
def test_card_formats(card: str) -> None:
    assert found(f"card {card}.") == [("credit_card", card)]


def test_card_mixed_separators_rejected() -> None:
    assert found("card 4111 1111-1111 1111") == []


def test_luhn_valid_order_numbers_are_not_cards() -> None:
    assert found("Order 9111111111111111 and IMEI 490154203237518") == []


# --- SSN -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"])
def test_invalid_ssn_blocks(bad: str) -> None:
    assert found(f"SSN {bad}") == []


def test_unformatted_ssn_needs_context() -> None:
    assert found("SSN 123456789") == [("ssn", "123456789")]
    assert found("social security number: 123456789") == [("ssn", "123456789")]
    assert found("Ticket 123456789") == []


def test_ssn_inside_longer_dashed_run_rejected() -> None:
    assert found("part 123-45-6789-1") == []


# --- IPs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3.4",
        "v1.2.3.4",
        "1.2.3.4.5",
        "Python 1.0.0",
        "999.1.1.1",
        "OID 1.3.6.1.4.1",
        "section 3.2.1.4",
        "Chrome/120.0.0.0 Safari",
        "MAC 00:1A:2B:3C:4D:5E",
        "std::cout and log::debug",
        "at 10:30:45",
    ],
)
def test_versions_and_lookalikes_are_not_ips(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        ("server 10.0.0.1.", "10.0.0.1"),
        ("http://192.168.0.1:8080/x", "192.168.0.1"),
        ("net 10.0.0.0/8", "10.0.0.0"),
        ("host 2001:db8::1 down", "2001:db8::1"),
        ("[2001:db8::42]:443", "2001:db8::42"),
        ("::ffff:192.0.2.128", "::ffff:192.0.2.128"),
        ("loopback ::1", "::1"),
        ("Phone:10.1.1.1", "10.1.1.1"),
        ("user@10.0.0.1", "10.0.0.1"),
    ],
)
def test_ips(text: str, ip: str) -> None:
    assert found(text) == [("ip_address", ip)]


# --- phones --------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "(415) 555-0132",
        "415-555-0132",
        "415.555.0132",
        "+1 415 555 0132",
        "+44 20 7946 0958",
        "+8613800138000",
        "+44 (0)20 7946 0958",
    ],
)
def test_phone_formats(phone: str) -> None:
    assert found(f"call {phone} now") == [("phone", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "on 2024-01-15 at 10:30",
        "2024-01-15T10:30:00Z",
        "unix 1700000000",
        "price $4155550132",
        "Order #415-555-0132",
        "invoice no. 212-555-0147",
        "IMEI 35-209900-176148-1",
        "ISBN 978-0-306-40615-7",
        "+1 555 0132",  # too short for NANP
        "+1 015 555 0132",  # NANP area code cannot start with 0
        "415-555-0132.5",
    ],
)
def test_phone_guards(text: str) -> None:
    assert found(text) == []


# --- e-mail --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["user@localhost", "a@b", "icon@2x.png", "git@github.com:org/repo.git", "@john"])
def test_email_negatives(text: str) -> None:
    assert found(text) == []


def test_email_trailing_period_and_mailto() -> None:
    assert found("mailto:bob@example.com.") == [("email", "bob@example.com")]


# --- secrets ---------------------------------------------------------------------

_KEY = "AKIA" + "Q3EGQW2T7OXKR5ZM"


@pytest.mark.parametrize(
    "token",
    [
        _KEY,
        "ghp_" + "a1B2c3D4e5" * 3 + "F6g7h8",
        "github_pat_" + "11ABCDEFG0" * 6,
        "sk-" + "T3BlbkFJ9x" * 4,
        "sk-proj-" + "Zq81_x-Pw" * 5 + "Ab1",
        "sk-ant-api03-" + "Hk29dLq0ZP" * 4,
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    ],
)
def test_vendor_secrets(token: str) -> None:
    assert found(f'token="{token}"') == [("secret", token)]


@pytest.mark.parametrize(
    "token",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "sk-" + "x" * 40,
        "sk-XXXXXXXXXXXXXXXXXXXXXXXX",
        "sk-your_api_key_here_123456",
        "sk-<your-openai-key-1234567890>",
        "ghp_" + "0" * 36,
        "xoxb-0000000000-0000000000-aaaaaaaaaaaa",
        "task-runner-framework-2024",
    ],
)
def test_secret_placeholders_not_flagged(token: str) -> None:
    assert found(f"key {token} here") == []


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def test_jwt_header_must_decode_to_json_with_alg() -> None:
    good = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': '1'})}.{'s' * 10}Zz0_-abcdef"
    assert found(f"Bearer {good}") == [("secret", good)]
    no_alg = f"{_b64({'typ': 'JWT'})}.{_b64({'sub': '1'})}.{'s' * 10}Zz0_-abcdef"
    assert found(f"Bearer {no_alg}") == []
    unsigned = f"{_b64({'alg': 'none'})}.{_b64({'sub': '1'})}."
    assert found(f"Bearer {unsigned}") == [("secret", unsigned)]
    assert found("eyJhbGciOiJIUzI1NiJ9.notbase64!!.sig") == []


def test_pem_block_spans_whole_key_and_open_block() -> None:
    body = "\n".join(["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"] * 3)
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    assert found(f"key:\n{pem}\nthanks") == [("secret", pem)]
    truncated = f"-----BEGIN PRIVATE KEY-----\n{body}"
    assert found(f"{truncated}\n") == [("secret", truncated)]
    assert found("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----") == []


# --- overlaps, ordering, positions ------------------------------------------------


def test_overlap_resolution_prefers_longer() -> None:
    kept = resolve_overlaps([Entity("phone", 0, 10), Entity("credit_card", 2, 20), Entity("email", 25, 30)])
    assert kept == [Entity("credit_card", 2, 20), Entity("email", 25, 30)]


def test_category_filter_applies_after_overlap_resolution() -> None:
    # The spaced IBAN contains digit groups; they must not surface as other kinds.
    text = "IBAN DE89 3704 0044 0532 0130 00"
    assert found(text, frozenset({"phone", "credit_card"})) == []
    assert found(text, frozenset({"iban"})) == [("iban", "DE89 3704 0044 0532 0130 00")]


def test_positions_sorted_and_non_overlapping_on_mixed_text() -> None:
    pieces = ["john@example.com", "(415) 555-0132", "4111 1111 1111 1111", "10.0.0.1", "123-45-6789", _KEY, "lorem", "电话"]
    rng = random.Random(7)
    chosen = [rng.choice(pieces) for _ in range(400)]
    text = " ".join(chosen)
    entities = find_entities(text, ALL_CATEGORIES)
    assert entities == sorted(entities, key=lambda e: e.start)
    assert all(a.end <= b.start for a, b in pairwise(entities))
    # Every PII piece is found exactly once, at its exact span.
    assert [text[e.start : e.end] for e in entities] == [p for p in chosen if p not in ("lorem", "电话")]


def test_entity_is_frozen() -> None:
    entity = Entity("email", 1, 2)
    with pytest.raises(AttributeError):
        entity.start = 5  # type: ignore[misc]
