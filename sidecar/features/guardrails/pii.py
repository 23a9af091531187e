"""PII and secret detection: ``find_entities``.

Design: one combined pre-filter regex walks the text (plus ``str.find`` for
the literal lower-case vendor prefixes, see ``_vendor_tokens``).  Its first element is
a single character class, which lets CPython's ``re`` skip ahead with a
tight C loop over characters that cannot start a candidate (most prose);
each alternative then dispatches with a one-character lookbehind on what was
consumed.  Only the rare candidates reach Python, where they are validated
(Luhn, mod-97, ``ipaddress``, JWT header decoding, ...).

Word boundaries are explicit ASCII lookarounds (see ``numeric.bounded``),
never ``\\b``: ``\\b`` treats CJK as word characters and would miss
``请联系john@example.com谢谢``.

Decision (documented for policy owners): bare 11-digit Chinese mobile
numbers (``13800138000``) and bare 10-digit NANP numbers are reported as
phones only with a phone cue (``电话``, ``手机``, ``tel``, ``call`` ...) in
the 32 characters before them; without a cue they are indistinguishable
from order numbers and timestamps.
"""

from __future__ import annotations

import re
from typing import Final

from sidecar.core.entity import ALL_CATEGORIES, EMAIL, IBAN, IP_ADDRESS, SECRET, Entity, resolve_overlaps

from .numeric import READS_AFTER, READS_BEFORE, bounded, is_word, scan_numeric_run
from .secret_rules import MAX_TOKEN, secret_len
from .validators import IBAN_LENGTHS, email_ok, iban_ok, ipv6_ok

__all__ = ["NumericMemo", "find_entities"]

# Digit-run findings by what the run's detectors read (see `_numeric`), for a caller that scans
# overlapping windows of one stream: a run is then validated once, not once per chunk. Owned by
# that caller (one per exchange), cleared past MEMO_ENTRIES.
NumericMemo = dict[tuple[str, int, int], tuple[Entity, ...]]
MEMO_ENTRIES: Final = 256

_PREFILTER: Final = re.compile(
    r"[0-9@:A-Z\-]"
    r"(?:"
    # Digit run with >= 4 digits, joined by up to 3 separator chars.
    r"(?<=[0-9])(?P<num>(?=(?:[ .\-()/]{0,3}[0-9]){3})(?:[0-9]+|[ .\-()/]{1,3}(?=[0-9]))*)"
    # The next three only *look ahead* (capturing inside the lookahead): they
    # must not consume characters, or "Phone:415-555-0132" would lose its
    # digits to the IPv6 branch and "user@10.0.0.1" its IP to the e-mail one.
    r"|(?<=@)(?=(?P<email>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+))"
    r"|(?<=:)(?=(?P<colon>[0-9A-Fa-f:.]+))"
    r"|(?<=[A-Z])(?=(?P<upper>[A-Z][0-9]{2}(?: ?[A-Z0-9]){8,34}|KIA[A-Z0-9]{16}|SIA[A-Z0-9]{16}))"
    r"|(?<=-)(?P<pem>----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)"
    r")"
)
_SEPARATOR_RE: Final = re.compile(r"[^0-9]+")
_EMAIL_LOCAL_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-'"
)
# AKIA/ASIA keys are upper-case and go through the pre-filter instead.
_TOKEN_PREFIXES: Final = (
    "eyJ", "sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox",
)  # fmt: skip
_PLAIN_PREFIXES: Final = tuple(prefix for prefix in _TOKEN_PREFIXES if "_" not in prefix)
# A character each plain prefix holds that prose rarely does: `char in text` is one memchr, far
# cheaper than searching for the prefix itself, and a text without it cannot hold the prefix.
_PREFIX_HINTS: Final = {"eyJ": "J", "sk-": "-", "xox": "x"}
# What a pre-filter match needs besides its first character (see the branches): a digit (digit
# runs, an IBAN's check digits two characters after the match start), "@", ":", "-----BEGIN",
# or "KIA"/"SIA" one character after it (AWS keys). No match can start more than two characters
# before the first of these, so the regex starts there (and is skipped when there is none):
# `str.find` runs at memchr speed, the regex's character-class scan at ~50 instructions a character.
_TRIGGERS: Final = (*"0123456789", "@", ":", "-----BEGIN", "KIA", "SIA")
_TRIGGER_LEAD: Final = 2
# Below this length the fifteen searches cost more than the regex's own scan (~1 K instructions a call).
_TRIGGER_MIN_CHARS: Final = 256
_IPV6_CHARS: Final = frozenset("0123456789abcdefABCDEF:.")
_PEM_END_RE: Final = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----")
_PEM_BODY_RE: Final = re.compile(r"[A-Za-z0-9+/=\s]*")
# Longest PEM block we will span (an 8192-bit RSA key is ~6.5 KB).
_PEM_MAX: Final = 16384
_PEM_MIN_BODY: Final = 64


def _expand_left(text: str, pos: int, allowed: frozenset[str], limit: int) -> int:
    start = pos
    floor = max(0, pos - limit)
    while start > floor and text[start - 1] in allowed:
        start -= 1
    return start


def _email(text: str, match: re.Match[str], out: list[Entity]) -> None:
    at = match.start()
    start = _expand_left(text, at, _EMAIL_LOCAL_CHARS, 64)
    while start < at and text[start] in ".'":
        start += 1
    if start > 0 and text[start - 1] == "@":
        return  # "a@b.com@c.org": a second "@" is not a new mailbox
    end = match.end("email")
    domain = match.group("email")
    # "git@github.com:owner/repo" is an SSH remote, not a mailbox.
    if end < len(text) and text[end] == ":" and end + 1 < len(text) and not text[end + 1].isspace():
        return
    if email_ok(text[start:at], domain) and bounded(text, start, end):
        out.append(Entity(EMAIL, start, end))


def _ipv6(text: str, match: re.Match[str], out: list[Entity]) -> None:
    start = _expand_left(text, match.start(), _IPV6_CHARS, 45)
    end = match.end("colon")
    # Sentence punctuation: "... at fe80::1." or "host 2001:db8::1: down".
    while end - start > 2 and text[end - 1] == ".":
        end -= 1
    if text[end - 1] == ":" and text[end - 2] != ":":
        end -= 1
    if text.count(":", start, end) >= 2 and ipv6_ok(text[start:end]) and bounded(text, start, end):
        out.append(Entity(IP_ADDRESS, start, end))


def _upper(text: str, match: re.Match[str], out: list[Entity]) -> None:
    start = match.start()
    if text.startswith(("AKIA", "ASIA"), start):
        _token(text, start, out)
        return
    expected = IBAN_LENGTHS.get(text[start : start + 2])
    if expected is None:
        return
    chars: list[str] = []
    pos = start
    # Consume exactly the country's length, allowing single spaces between
    # groups of four (the printed form) or no spaces at all.
    while len(chars) < expected and pos < match.end("upper"):
        char = text[pos]
        if char == " ":
            if len(chars) % 4 != 0:
                return
        else:
            chars.append(char)
        pos += 1
    if len(chars) == expected and iban_ok("".join(chars)) and bounded(text, start, pos):
        out.append(Entity(IBAN, start, pos))


def _token(text: str, start: int, out: list[Entity]) -> None:
    length = secret_len(text[start : start + MAX_TOKEN])
    if length and bounded(text, start, start + length):
        out.append(Entity(SECRET, start, start + length))


def _vendor_tokens(text: str, out: list[Entity]) -> None:
    # Lower-case vendor prefixes are found with str.find (a C substring
    # search) instead of the pre-filter: putting e/s/g/x in its leading
    # character class made the scan stop at ~20% of prose characters and
    # tripled its cost.
    # Most texts have no "_": one search then stands for the six prefixes that hold one (no two
    # prefixes can start at one position, so their order does not matter).
    for prefix in _TOKEN_PREFIXES if "_" in text else _PLAIN_PREFIXES:
        hint = _PREFIX_HINTS.get(prefix)
        if hint is not None and hint not in text:
            continue
        pos = text.find(prefix)
        while pos != -1:
            if pos == 0 or not is_word(text[pos - 1]):
                _token(text, pos, out)
            pos = text.find(prefix, pos + 1)


def _pem(text: str, match: re.Match[str], out: list[Entity]) -> None:
    start = match.start()
    limit = start + _PEM_MAX
    end_marker = _PEM_END_RE.search(text, match.end(), limit)
    if end_marker is not None:
        body_end, end = end_marker.start(), end_marker.end()
    else:
        # An unterminated block (truncated paste, or a stream still arriving)
        # is still a private key: cover it through the end of its base64 body.
        run = _PEM_BODY_RE.match(text, match.end(), limit)
        body_end = run.end() if run else match.end()
        end = match.end() + len(text[match.end() : body_end].rstrip())
    body = text[match.end() : body_end]
    # Encrypted PEMs carry "Proc-Type:"/"DEK-Info:" header lines; drop them
    # before judging whether a real base64 body is present.
    payload = "".join(line for line in body.split() if ":" not in line and "," not in line)
    if len(payload) < _PEM_MIN_BODY or "..." in body:
        return
    out.append(Entity(SECRET, start, end))


def _numeric(text: str, match: re.Match[str], out: list[Entity], memo: NumericMemo | None) -> None:
    run = match.group()
    # Cheap exit for years, prices, counts: every digit-based format needs
    # >= 8 digits except IPv4, which needs three dots (>= 7 chars).
    if len(run) < 7 or (len(_SEPARATOR_RE.sub("", run)) < 8 and run.count(".") < 3):
        return
    lo, hi = match.start(), match.end()
    # "+1 ..." and "(415) ..." start one char before the first digit.
    if lo > 0 and text[lo - 1] in "+(":
        lo -= 1
    if memo is None:
        scan_numeric_run(text, lo, hi, out)
        return
    # The run's findings depend only on the text it reads: scanned in that piece, they are the same.
    base = max(0, lo - READS_BEFORE)
    key = (text[base:hi + READS_AFTER], lo - base, hi - base)
    found = memo.get(key)
    if found is None:
        fresh: list[Entity] = []
        scan_numeric_run(*key, fresh)
        found = tuple(fresh)
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[key] = found
    out.extend(entity.shifted(base) for entity in found)


def first_trigger(text: str) -> int:
    """Where the pre-filter can first match in `text` (-1: nowhere); see `_TRIGGERS`."""
    first = -1
    for trigger in _TRIGGERS:  # a plain loop: this runs on every text and stream window
        found = text.find(trigger)
        if found != -1 and (first == -1 or found < first):
            first = found
    return first if first == -1 else max(0, first - _TRIGGER_LEAD)


def _candidates(text: str, memo: NumericMemo | None) -> list[Entity]:
    out: list[Entity] = []
    start = first_trigger(text) if len(text) >= _TRIGGER_MIN_CHARS else 0
    # From `start` on the regex finds what it finds from 0 (its lookbehinds still see before it).
    for match in _PREFILTER.finditer(text, start) if start != -1 else ():
        kind = match.lastgroup
        if kind == "num":
            _numeric(text, match, out, memo)
        elif kind == "email":
            _email(text, match, out)
        elif kind == "colon":
            _ipv6(text, match, out)
        elif kind == "upper":
            _upper(text, match, out)
        elif kind == "pem":
            _pem(text, match, out)
    _vendor_tokens(text, out)
    return out


def find_entities(text: str, categories: frozenset[str], memo: NumericMemo | None = None) -> list[Entity]:
    """Validated entities of the requested categories, sorted and non-overlapping.

    `memo` (optional, the caller's) remembers digit-run findings across calls on overlapping texts.

    Overlaps are resolved across *all* categories before filtering, so a card
    number never resurfaces as a "phone" when only phones are requested.
    Raises ``ValueError`` for unknown category names (a policy typo must not
    silently disable a guardrail).
    """
    if not categories <= ALL_CATEGORIES:  # a subset test allocates nothing: this runs per text and chunk
        raise ValueError(f"unknown PII categories: {sorted(categories - ALL_CATEGORIES)}")
    if not categories:
        return []
    candidates = _candidates(text, memo)
    if not candidates:  # most texts and stream windows
        return []
    resolved = resolve_overlaps(candidates)
    return [entity for entity in resolved if entity.category in categories]
