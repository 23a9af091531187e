from __future__ import annotations

import pytest

from sidecar.features.guardrails.validators import (
    IBAN_LENGTHS,
    card_issuer_ok,
    card_ok,
    email_ok,
    iban_mod97,
    iban_ok,
    ipv4_ok,
    ipv6_ok,
    luhn_ok,
    ssn_ok,
)


@pytest.mark.parametrize("digits", ["79927398713", "4111111111111111", "0", "18"])
def test_luhn_accepts_valid(digits: str) -> None:
    assert luhn_ok(digits)


@pytest.mark.parametrize("digits", ["79927398710", "4111111111111112", "1234567812345678"])
def test_luhn_rejects_invalid(digits: str) -> None:
    assert not luhn_ok(digits)


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa 16
        "4222222222222",  # Visa 13
        "5555555555554444",  # Mastercard 5x
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "6011111111111117",  # Discover
        "3530111333300000",  # JCB
        "30569309025904",  # Diners 14
        "6200000000000005",  # UnionPay
    ],
)
def test_card_ok_known_test_numbers(number: str) -> None:
    assert card_ok(number)


def test_mastercard_two_series_boundaries() -> None:
    assert card_issuer_ok("2221000000000009")
    assert card_issuer_ok("2720990000000000")
    assert not card_issuer_ok("2220990000000000")
    assert not card_issuer_ok("2721000000000000")


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("9111111111111111", "no issuer prefix"),
        ("411111111111111", "Visa with 15 digits"),
        ("37828224631000", "Amex with 14 digits"),
        ("0000000000000000", "repeated digit"),
        ("356938035643809", "IMEI: Luhn-valid, 35 prefix but 15 digits"),
        ("4111111111111112", "Luhn failure"),
    ],
)
def test_card_ok_rejects(number: str, why: str) -> None:
    assert not card_ok(number), why


@pytest.mark.parametrize(
    "value",
    ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NO9386011117947"],
)
def test_iban_ok(value: str) -> None:
    assert iban_ok(value)
    assert iban_mod97(value) == 1


def test_iban_rejects_bad_checksum_length_country_and_case() -> None:
    assert not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # one short for DE (22)
    assert not iban_ok("ZZ89370400440532013000")
    assert not iban_ok("de89370400440532013000")
    assert not iban_ok("DE89 3704 0044 0532 0130 00")  # caller removes spaces


def test_iban_length_table_is_sane() -> None:
    assert IBAN_LENGTHS["DE"] == 22 and IBAN_LENGTHS["NO"] == 15 and IBAN_LENGTHS["LC"] == 32
    assert all(15 <= length <= 34 for length in IBAN_LENGTHS.values())


@pytest.mark.parametrize(
    ("area", "group", "serial", "ok"),
    [
        ("123", "45", "6789", True),
        ("000", "45", "6789", False),
        ("666", "45", "6789", False),
        ("900", "45", "6789", False),
        ("999", "45", "6789", False),
        ("899", "45", "6789", True),
        ("123", "00", "6789", False),
        ("123", "45", "0000", False),
        ("12", "345", "6789", False),
    ],
)
def test_ssn_rules(area: str, group: str, serial: str, ok: bool) -> None:
    assert ssn_ok(area, group, serial) is ok


def test_ip_validators() -> None:
    assert ipv4_ok("192.168.1.1")
    assert not ipv4_ok("256.1.1.1")
    assert not ipv4_ok("01.02.03.04")
    assert ipv6_ok("2001:db8::1")
    assert ipv6_ok("::1")
    assert ipv6_ok("fe80::1")
    assert not ipv6_ok("a::b")
    assert not ipv6_ok("dead::beef")
    assert not ipv6_ok("::")
    assert not ipv6_ok("10:30:45")


@pytest.mark.parametrize(
    ("local", "domain", "ok"),
    [
        ("john", "example.com", True),
        ("jane.doe+tag", "mail.example.co.uk", True),
        ("x", "xn--80ak6aa92e.com", True),
        ("user", "localhost", False),
        ("a", "b", False),
        ("a", "b.c", False),  # 1-letter TLD
        ("a", "b.c1", False),
        ("icon", "2x.png", False),
        (".john", "example.com", False),
        ("jo..hn", "example.com", False),
        ("john", "-bad.com", False),
    ],
)
def test_email_ok(local: str, domain: str, ok: bool) -> None:
    assert email_ok(local, domain) is ok
