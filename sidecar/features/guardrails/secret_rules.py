"""Vendor-prefixed credential validation (AWS, GitHub, OpenAI, Anthropic,
Slack, JWT) and placeholder rejection.

The pre-filter in ``pii.py`` hands over a token that starts with a known
prefix; here we decide whether it is a plausible live credential.  Docs and
tutorials are full of fake keys, so placeholders are filtered explicitly.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Final

_PLACEHOLDER_MARKERS: Final = (
    "example", "xxxx", "your_", "your-", "yourkey", "placeholder", "redacted",
    "dummy", "<", ">", "...", "****", "changeme", "insert",
)  # fmt: skip

_AWS_RE: Final = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}")
_GITHUB_RE: Final = re.compile(r"gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{40,251}")
_ANTHROPIC_RE: Final = re.compile(r"sk-ant-[A-Za-z0-9_-]{32,}")
_OPENAI_RE: Final = re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")
_SLACK_RE: Final = re.compile(r"xox[abprs]-[A-Za-z0-9-]{10,}")
_JWT_RE: Final = re.compile(r"(eyJ[A-Za-z0-9_-]+)\.(eyJ[A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")

# Tokens handed to ``secret_ok`` are at most this long; beyond it we stop
# reading (bounded work on pathological input).
MAX_TOKEN: Final = 4096


def is_placeholder(token: str) -> bool:
    """Documentation-style fake: marker words, or too few distinct characters."""
    lowered = token.lower()
    if any(marker in lowered for marker in _PLACEHOLDER_MARKERS):
        return True
    body = re.sub(r"^[a-z]+[_-](?:[a-z]+[_-])?", "", lowered)
    alnum = [char for char in body if char.isalnum()]
    # "sk-aaaaaaaa...", "ghp_000000..." and friends: real keys are random.
    return len(set(alnum)) <= 3


def _has_letter_and_digit(text: str) -> bool:
    return any(char.isdigit() for char in text) and any(char.isalpha() for char in text)


def _b64url_json(segment: str) -> object:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def jwt_ok(token: str) -> bool:
    """Header decodes to a JSON object with a string ``alg``; payload to an object."""
    match = _JWT_RE.fullmatch(token)
    if match is None:
        return False
    header = _b64url_json(match.group(1))
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return False
    if not isinstance(_b64url_json(match.group(2)), dict):
        return False
    # Unsigned ("alg": "none") tokens legitimately have an empty signature.
    return header["alg"].lower() == "none" or len(match.group(3)) >= 16


def secret_len(token: str) -> int:
    """Length of the valid credential at the start of ``token`` (0 if none).

    ``token`` is the maximal run of token characters starting at a vendor
    prefix; trailing punctuation is tolerated by matching a prefix of it.
    """
    token = token[:MAX_TOKEN]
    if token.startswith("eyJ"):
        match = _JWT_RE.match(token)
        return match.end() if match and jwt_ok(match.group()) else 0
    for regex in (_AWS_RE, _GITHUB_RE, _ANTHROPIC_RE, _OPENAI_RE, _SLACK_RE):
        match = regex.match(token)
        if match is None:
            continue
        value = match.group().rstrip("-_")
        if is_placeholder(value) or not _has_letter_and_digit(value[4:]):
            return 0
        return len(value)
    return 0
