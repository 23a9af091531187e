"""Detectors for digit-based entities: cards, phones, SSNs, IPv4.

``pii.py`` hands over the span of one digit run (digits joined by small
separators) found by its pre-filter; these functions look for the concrete
formats inside that window, apply boundary and context guards against the
*whole* text, and validate.  Windows are short, so per-run work is tiny.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from .entity import CREDIT_CARD, IP_ADDRESS, PHONE, SSN, Entity
from .validators import card_ok, ipv4_ok, ssn_ok

_CARD_RES: Final = (
    re.compile(r"[0-9]{12,19}"),
    # 4-4-4-4(-3) with one consistent separator (Visa/MC/Discover/JCB/...).
    re.compile(r"[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{3})?"),
    # 4-6-5 (Amex) and 4-6-4 (Diners).
    re.compile(r"[0-9]{4}([ -])[0-9]{6}\1[0-9]{4,5}"),
)
_SSN_RE: Final = re.compile(r"([0-9]{3})-([0-9]{2})-([0-9]{4})")
_NANP_RE: Final = re.compile(
    r"(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}"
)
_E164_RE: Final = re.compile(r"\+[1-9][0-9]{0,3}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5}))+")
_BARE_DIGITS_RE: Final = re.compile(r"[0-9]{9,11}")
_IPV4_RE: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_CN_MOBILE_RE: Final = re.compile(r"1[3-9][0-9]{9}")
_NANP_BARE_RE: Final = re.compile(r"[2-9][0-9]{2}[2-9][0-9]{6}")

# A phone-shaped number right after these words is an identifier, not a phone.
_ID_CONTEXT_RE: Final = re.compile(
    r"(?i)(?:\b(?:order|invoice|ref|reference|ticket|tracking|imei|serial|sku|isbn|"
    r"acct|account|id|transaction|txn|confirmation|case|po|part|model|batch|lot)"
    r"(?:\s*(?:no\.?|number|num|#|:))?\s*[#:.]?\s*|#\s*|[$€£¥]\s*|订单号?\s*[:：]?\s*)$"
)
_VERSION_CONTEXT_RE: Final = re.compile(
    r"(?i)(?:\bv|\bversion\s*|\bver\.?\s*|\brelease\s*|\bbuild\s*|\boid\s*|\bsection\s*|\bchapter\s*|"
    r"\bclause\s*|§\s*|版本\s*)$"
)
_PHONE_CONTEXT_RE: Final = re.compile(
    r"(?i)(?:phone|tel|mobile|cell|call|sms|whatsapp|fax|电话|手机|联系|致电|電話)"
)
_SSN_CONTEXT_RE: Final = re.compile(r"(?i)(?:ssn|social\s+security|社会安全|社會安全)")
_CONTEXT_WINDOW: Final = 32


def is_word(char: str) -> bool:
    """ASCII alnum/underscore only: CJK neighbours must not block a match."""
    return char.isascii() and (char.isalnum() or char == "_")


def bounded(text: str, start: int, end: int) -> bool:
    """Not glued to more ASCII word chars or to a longer dotted/dashed run."""
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if is_word(before) or is_word(after):
        return False
    # A trailing "/" is fine (URL paths, CIDR "10.0.0.0/8"); a leading one
    # glued to a word is a product token ("Chrome/120.0.0.0").
    if before in ".-/" and start > 1 and is_word(text[start - 2]):
        return False
    return not (after in ".-" and end + 1 < len(text) and is_word(text[end + 1]))


def _left_context(text: str, start: int) -> str:
    return text[max(0, start - _CONTEXT_WINDOW) : start]


def _cards(text: str, lo: int, hi: int, out: list[Entity]) -> None:
    for regex in _CARD_RES:
        for match in regex.finditer(text, lo, hi):
            digits = re.sub(r"[ -]", "", match.group())
            if card_ok(digits) and bounded(text, match.start(), match.end()):
                out.append(Entity(CREDIT_CARD, match.start(), match.end()))


def _ssns(text: str, lo: int, hi: int, out: list[Entity]) -> None:
    for match in _SSN_RE.finditer(text, lo, hi):
        if ssn_ok(*match.groups()) and bounded(text, match.start(), match.end()):
            out.append(Entity(SSN, match.start(), match.end()))
    for match in _BARE_DIGITS_RE.finditer(text, lo, hi):
        raw = match.group()
        # Unformatted SSNs are just 9 digits: only trust them next to a cue.
        if len(raw) != 9 or not bounded(text, match.start(), match.end()):
            continue
        if ssn_ok(raw[:3], raw[3:5], raw[5:]) and _SSN_CONTEXT_RE.search(
            _left_context(text, match.start())
        ):
            out.append(Entity(SSN, match.start(), match.end()))


def _phone_allowed(text: str, start: int, end: int) -> bool:
    return bounded(text, start, end) and not _ID_CONTEXT_RE.search(_left_context(text, start))


def _e164_ok(raw: str) -> bool:
    digits = re.sub(r"[^0-9]", "", raw.replace("(0)", ""))
    if not 8 <= len(digits) <= 15:
        return False
    if digits[0] == "1":
        # +1 numbers are NANP: fixed length and no 0/1-leading area/exchange.
        return len(digits) == 11 and digits[1] not in "01" and digits[4] not in "01"
    return True


def _phones(text: str, lo: int, hi: int, out: list[Entity]) -> None:
    for match in _NANP_RE.finditer(text, lo, hi):
        if _phone_allowed(text, match.start(), match.end()):
            out.append(Entity(PHONE, match.start(), match.end()))
    for match in _E164_RE.finditer(text, lo, hi):
        if _e164_ok(match.group()) and _phone_allowed(text, match.start(), match.end()):
            out.append(Entity(PHONE, match.start(), match.end()))
    for match in _BARE_DIGITS_RE.finditer(text, lo, hi):
        raw = match.group()
        # Bare 10/11-digit runs are usually IDs or timestamps; only a phone
        # cue ("tel", "电话", ...) right before makes them phones.
        shaped = _NANP_BARE_RE.fullmatch(raw) or _CN_MOBILE_RE.fullmatch(raw)
        if not shaped or not _phone_allowed(text, match.start(), match.end()):
            continue
        if _PHONE_CONTEXT_RE.search(_left_context(text, match.start())):
            out.append(Entity(PHONE, match.start(), match.end()))


def _ipv4s(text: str, lo: int, hi: int, out: list[Entity]) -> None:
    for match in _IPV4_RE.finditer(text, lo, hi):
        start, end = match.start(), match.end()
        if not bounded(text, start, end) or not ipv4_ok(match.group()):
            continue
        if start > 0 and text[start - 1] in ".-":
            continue
        if _VERSION_CONTEXT_RE.search(_left_context(text, start)):
            continue
        out.append(Entity(IP_ADDRESS, start, end))


_DETECTORS: Final[tuple[Callable[[str, int, int, list[Entity]], None], ...]] = (
    _cards,
    _ssns,
    _phones,
    _ipv4s,
)


def scan_numeric_run(text: str, lo: int, hi: int, out: list[Entity]) -> None:
    """Append every validated digit-based entity inside ``text[lo:hi]``."""
    for detector in _DETECTORS:
        detector(text, lo, hi, out)
