"""Detectors for digit-based entities: cards, phones, SSNs, IPv4.

``pii.py`` hands over the span of one digit run (digits joined by small
separators) found by its pre-filter.  A run can hold several values
("card 4111 1111 1111 1111 (415) 555-0132"), so every format is tried
*anchored* at every token start inside the run rather than with
``finditer`` (whose leftmost, non-overlapping matches would let a wrong
overlong match hide the right one).  All shapes end in ``(?![0-9])`` so a
shape never matches the prefix of a longer digit group.  Boundary and
context guards look at the *whole* text.  Runs are short, so this is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from sidecar.core.entity import CREDIT_CARD, IP_ADDRESS, PHONE, SSN, Entity

from .validators import card_ok, ipv4_ok, ssn_ok

_CARD_RES: Final = (
    re.compile(r"[0-9]{12,19}(?![0-9])"),
    # 4-4-4-4-3 and 4-4-4-4 with one consistent separator (Visa/MC/...).
    re.compile(r"[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}\1[0-9]{3}(?![0-9])"),
    re.compile(r"[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?![0-9])"),
    # 4-6-5 (Amex) and 4-6-4 (Diners).
    re.compile(r"[0-9]{4}([ -])[0-9]{6}\1[0-9]{4,5}(?![0-9])"),
)
_SSN_RE: Final = re.compile(r"([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9])")
_NANP_RE: Final = re.compile(
    r"(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}(?![0-9])"
)
_E164_RE: Final = re.compile(r"\+[1-9][0-9]{0,3}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5}))+(?![0-9])")
_E164_TAIL: Final = re.compile(r"[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})$")
_BARE_DIGITS_RE: Final = re.compile(r"[0-9]{9,11}(?![0-9])")
_IPV4_RE: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![0-9])")
_TOKEN_START_RE: Final = re.compile(r"[+(]|(?<![0-9])[0-9]")
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
# What `scan_numeric_run` reads around its run: the context window before, and two characters
# after (the boundary checks). Its result depends on nothing else.
READS_BEFORE: Final = _CONTEXT_WINDOW
READS_AFTER: Final = 2


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


def _token_starts(text: str, lo: int, hi: int) -> list[int]:
    """Positions where a number can begin: ``+``, ``(`` or a digit after a non-digit."""
    # The lookbehind sees text before ``lo`` too (re's pos does not hide it).
    return [match.start() for match in _TOKEN_START_RE.finditer(text, lo, hi)]


def _cards(text: str, start: int, hi: int, out: list[Entity]) -> None:
    for regex in _CARD_RES:
        match = regex.match(text, start, hi)
        if match and card_ok(re.sub(r"[ -]", "", match.group())) and bounded(text, start, match.end()):
            out.append(Entity(CREDIT_CARD, start, match.end()))
            return


def _ssns(text: str, start: int, hi: int, out: list[Entity]) -> None:
    match = _SSN_RE.match(text, start, hi)
    if match and ssn_ok(*match.groups()) and bounded(text, start, match.end()):
        out.append(Entity(SSN, start, match.end()))
        return
    bare = _BARE_DIGITS_RE.match(text, start, hi)
    # Unformatted SSNs are just 9 digits: only trust them next to a cue.
    if bare is None or len(raw := bare.group()) != 9 or not bounded(text, start, bare.end()):
        return
    if ssn_ok(raw[:3], raw[3:5], raw[5:]) and _SSN_CONTEXT_RE.search(_left_context(text, start)):
        out.append(Entity(SSN, start, bare.end()))


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


def _e164(text: str, start: int, hi: int) -> int:
    """End of the longest valid E.164 number at ``start`` (0 if none).

    The greedy shape can run on into a following number ("+44 20 7946 0958
    4111 ..."), so trailing groups are dropped until the number validates.
    """
    match = _E164_RE.match(text, start, hi)
    raw = match.group() if match else ""
    while raw:
        end = start + len(raw)
        if _e164_ok(raw) and _phone_allowed(text, start, end):
            return end
        trimmed = _E164_TAIL.sub("", raw)
        raw = trimmed if trimmed != raw and len(trimmed) > 2 else ""
    return 0


def _phones(text: str, start: int, hi: int, out: list[Entity]) -> None:
    nanp = _NANP_RE.match(text, start, hi)
    if nanp and _phone_allowed(text, start, nanp.end()):
        out.append(Entity(PHONE, start, nanp.end()))
    if text[start] == "+" and (end := _e164(text, start, hi)):
        out.append(Entity(PHONE, start, end))
    bare = _BARE_DIGITS_RE.match(text, start, hi)
    if bare is None:
        return
    # Bare 10/11-digit runs are usually IDs or timestamps; only a phone cue
    # ("tel", "电话", ...) right before makes them phones.
    shaped = _NANP_BARE_RE.fullmatch(bare.group()) or _CN_MOBILE_RE.fullmatch(bare.group())
    if shaped and _phone_allowed(text, start, bare.end()) and _PHONE_CONTEXT_RE.search(_left_context(text, start)):
        out.append(Entity(PHONE, start, bare.end()))


def _ipv4s(text: str, start: int, hi: int, out: list[Entity]) -> None:
    match = _IPV4_RE.match(text, start, hi)
    if match is None or not bounded(text, start, match.end()) or not ipv4_ok(match.group()):
        return
    if start > 0 and text[start - 1] in ".-":
        return
    if not _VERSION_CONTEXT_RE.search(_left_context(text, start)):
        out.append(Entity(IP_ADDRESS, start, match.end()))


_DETECTORS: Final[tuple[Callable[[str, int, int, list[Entity]], None], ...]] = (
    _cards,
    _ssns,
    _phones,
    _ipv4s,
)


def scan_numeric_run(text: str, lo: int, hi: int, out: list[Entity]) -> None:
    """Append every validated digit-based entity starting inside ``text[lo:hi]``.

    Candidates may overlap (a phone inside a card-shaped run); the caller's
    overlap resolution keeps the longest. Reads only ``text[lo - READS_BEFORE:hi + READS_AFTER]``.
    """
    for start in _token_starts(text, lo, hi):
        for detector in _DETECTORS:
            detector(text, start, hi, out)
