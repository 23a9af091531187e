"""Checksum and structure validators used after the regex pre-filter.

Every validator takes an already-normalised candidate (separators removed)
and answers "is this really a value of that kind"; the regexes only find
places worth asking.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# --- payment cards -----------------------------------------------------------

# (prefix_low, prefix_high, allowed_lengths).  Prefix ranges are compared on
# the leading ``len(str(prefix_low))`` digits, so 2221..2720 covers the
# Mastercard 2-series and 622126..622925 the Discover/UnionPay co-brand.
_CARD_RANGES: Final[tuple[tuple[int, int, frozenset[int]], ...]] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # Amex
    (37, 37, frozenset({15})),  # Amex
    (6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, frozenset({16, 17, 18, 19})),  # Discover
    (65, 65, frozenset({16, 17, 18, 19})),  # Discover
    (622126, 622925, frozenset({16, 17, 18, 19})),  # Discover co-brand
    (3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (300, 305, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (36, 36, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (38, 39, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (2200, 2204, frozenset({16, 17, 18, 19})),  # Mir
    (5018, 5018, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (5020, 5020, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (5038, 5038, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (6304, 6304, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (6759, 6759, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
)


def luhn_ok(digits: str) -> bool:
    """Luhn mod-10 checksum over an all-digit string."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """True when the number has a known issuer prefix and a length it issues."""
    length = len(digits)
    for low, high, lengths in _CARD_RANGES:
        width = len(str(low))
        if length in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


def card_ok(digits: str) -> bool:
    """Issuer prefix + length + Luhn; rejects trivially repeated digits."""
    if not 12 <= len(digits) <= 19 or not digits.isdigit():
        return False
    if len(set(digits)) == 1:
        return False
    return card_issuer_ok(digits) and luhn_ok(digits)


# --- IBAN --------------------------------------------------------------------

IBAN_LENGTHS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16,
        "BG": 22, "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28,
        "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
        "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
        "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23,
        "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
        "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24,
        "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
        "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
        "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25,
        "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24,
        "XK": 20,
    }
)  # fmt: skip

_IBAN_SHAPE: Final = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+")


def iban_mod97(compact: str) -> int:
    """ISO 13616 check: rotate the first four chars, map letters to 10..35."""
    rotated = compact[4:] + compact[:4]
    numeric = "".join(str(int(char, 36)) for char in rotated)
    return int(numeric) % 97


def iban_ok(compact: str) -> bool:
    """Exact per-country length and mod-97 == 1 on an upper-case, space-free IBAN."""
    if _IBAN_SHAPE.fullmatch(compact) is None:
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    return expected == len(compact) and iban_mod97(compact) == 1


# --- SSN ---------------------------------------------------------------------


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000/666/900-999, no group 00, no serial 0000."""
    if (len(area), len(group), len(serial)) != (3, 2, 4):
        return False
    area_no = int(area)
    if area_no == 0 or area_no == 666 or area_no >= 900:
        return False
    return group != "00" and serial != "0000"


# --- IP addresses --------------------------------------------------------------


def ipv4_ok(candidate: str) -> bool:
    """Delegates to ``ipaddress`` (which also rejects leading-zero octets)."""
    try:
        ipaddress.IPv4Address(candidate)
    except ValueError:
        return False
    return True


def ipv6_ok(candidate: str) -> bool:
    """Valid IPv6 with enough substance to not be prose like ``a::b`` or ``::``."""
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    groups = [part for part in re.split(r"[:.]", candidate) if part]
    # "::1" and "fe80::1" style short forms are real; "a::b", "de::ad" or
    # "dead::beef" in code are not, so two-group forms need a digit and a
    # group of 3+ characters.
    if candidate == "::1" or len(groups) >= 3:
        return True
    has_digit = any(char.isdigit() for char in candidate)
    return len(groups) == 2 and has_digit and max(len(group) for group in groups) >= 3


# --- e-mail --------------------------------------------------------------------

_LOCAL_RE: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD_RE: Final = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{2,59}")
# File extensions that look like TLDs in "icon@2x.png"-style asset names.
_FILE_SUFFIXES: Final = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js",
     "ts", "json", "yaml", "yml", "txt", "log", "lock", "tar", "gz", "zip",
     "exe", "dll", "html", "pdf", "mp4", "mp3", "wasm"}
)  # fmt: skip


def email_ok(local: str, domain: str) -> bool:
    """RFC-ish local part, >= 2 valid DNS labels, alphabetic TLD of >= 2 chars."""
    if not 1 <= len(local) <= 64 or _LOCAL_RE.fullmatch(local) is None:
        return False
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253:
        return False
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return False
    tld = labels[-1]
    return _TLD_RE.fullmatch(tld) is not None and tld.lower() not in _FILE_SUFFIXES
