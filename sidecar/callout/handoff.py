"""The callout's decision, handed to the forwarding path in one signed header.

Envoy copies `x-cgt-decision` from the callout's 200 answer onto the routed request (and strips
any client-sent `x-cgt-*` before the callout). A header, unlike in-process state, reaches the
forwarding path whichever sidecar worker process serves it; the HMAC makes sure only the
callout could have written it, so the forwarding path trusts it and repeats no policy work.

What the decision binds (all inside the HMAC): the SHA-256 digest of the exact body bytes the
callout decided on (`body_sha256`, hex), its expiry (`expires_at`, epoch seconds: the callout's
clock plus `GATEWAY_DECISION_TTL_SECONDS`), the policy version, and each stage's typed
annotations (`DecisionKey`). The forwarding path checks the first three (`verify`); a quota
reservation in it can be claimed once only (features/quotas).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

from sidecar.core.endpoints import EndpointKind

DECISION_HEADER = "x-cgt-decision"
_VERSION = "v2"
# Envoy reads the callout's answer headers with a 60 KiB limit (a larger one fails the callout:
# 503), and the sidecar must accept the header on the forwarding path: stages bound what they put
# in `extra` so the encoded header stays below this.
MAX_DECISION_HEADER_BYTES = 48 * 1024
# How long a decision may be forwarded after the callout made it (Settings.decision_ttl_seconds).
# Envoy routes the request the moment the callout answers (the body is already buffered), so
# milliseconds are normal; a saturated sidecar can take seconds.
DEFAULT_DECISION_TTL_SECONDS = 60.0

T = TypeVar("T")
_MISSING = object()
JSONValue = Any
"""A value orjson can serialise (None, bool, int, float, str, list, dict of these)."""


class InvalidDecision(Exception):
    """The header is missing, forged, or cannot be decoded: nothing in it can be trusted."""


class RejectedDecision(Exception):
    """An authentic decision that must not be forwarded: `code` says why (`decision_expired`,
    `decision_body_mismatch`)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class DecisionKey(Generic[T]):
    """A typed annotation a callout stage adds to the decision, in the spirit of `web.AppKey`.

    `encode` turns the value into JSON-able data for the header, `decode` turns it back (and may
    raise ValueError/TypeError/KeyError on a malformed value: the header is signed, so that is a
    bug, not an attack). One key per stage that annotates; names are unique.
    """

    __slots__ = ("_decode", "_encode", "name")

    def __init__(self, name: str, encode: Callable[[T], JSONValue], decode: Callable[[JSONValue], T]) -> None:
        self.name = name
        self._encode = encode
        self._decode = decode

    def encode(self, value: T) -> JSONValue:
        return self._encode(value)

    def decode(self, value: JSONValue) -> T:
        return self._decode(value)

    def __repr__(self) -> str:
        return f"<DecisionKey {self.name}>"


@dataclass(frozen=True)
class Decision:
    request_id: str
    token_name: str
    team: str | None
    model_key: str
    deployments: tuple[str, ...]  # names, in the order to try them
    stream: bool
    client_wants_usage: bool
    policy_version: str
    body_sha256: str = ""  # hex SHA-256 of the exact body bytes the callout read
    expires_at: float = 0.0  # epoch seconds; 0 only in decisions built by tests and `explain`
    # Stage annotations by DecisionKey name, already encoded; read them with `get(KEY)`.
    extra: Mapping[str, JSONValue] = field(default_factory=dict)
    # Which client endpoint was decided: the forwarding path serves and books it accordingly.
    endpoint: EndpointKind = EndpointKind.CHAT

    def get(self, key: DecisionKey[T]) -> T | None:
        """The stage's annotation, decoded (once per decision: the forwarding path reads the quota
        reservation at claim, at the relay and at settlement); None when the stage added none."""
        raw = self.extra.get(key.name)
        if raw is None:
            return None
        # Not a field: orjson (the header) and ==/repr ignore it. Names are unique; values immutable.
        cache: dict[str, Any] = self.__dict__.setdefault("_decoded", {})
        found = cache.get(key.name, _MISSING)
        if found is _MISSING:
            found = cache[key.name] = key.decode(raw)
        return found  # type: ignore[no-any-return]


def annotate(extra: dict[str, JSONValue], key: DecisionKey[T], value: T) -> None:
    """Store a stage's annotation in a Check's `extra` (the only way annotations are written)."""
    extra[key.name] = key.encode(value)


def body_digest(raw_body: bytes) -> str:
    """Hex SHA-256 of the body bytes (hashlib: OpenSSL, about 2 GB/s on one core)."""
    return hashlib.sha256(raw_body).hexdigest()


def verify(decision: Decision, raw_body: bytes, now: float | None = None) -> None:
    """Raises RejectedDecision if the decision expired or was made for other body bytes."""
    now = time.time() if now is None else now
    if now > decision.expires_at:
        raise RejectedDecision("The gateway's policy decision for this request has expired", "decision_expired")
    if not hmac.compare_digest(hashlib.sha256(raw_body).hexdigest(), decision.body_sha256):  # body_digest()
        raise RejectedDecision("The request body is not the one the gateway's policy check decided on",
                               "decision_body_mismatch")


def encode(decision: Decision, key: bytes | DecisionSigner) -> str:
    """The header value for `decision`: `v2.<base64 JSON>.<base64url HMAC-SHA256, 18 bytes>`.

    The JSON is in base64's standard alphabet, unpadded: `+` and `/` are plain header characters,
    and leaving out base64url's translation pass saves a scan of the header's longest part.
    `decode` (urlsafe_b64decode, which reads `+/` as well as `-_`) reads either alphabet, so
    decisions of a sidecar from before this change still decode, and the other way round.
    """
    # orjson serializes the dataclass itself, many times faster than dumps(asdict(...)).
    payload = binascii.b2a_base64(orjson.dumps(decision), newline=False).rstrip(b"=")
    signer = key if isinstance(key, DecisionSigner) else DecisionSigner(key)
    return f"{_VERSION}.{payload.decode()}.{signer.sign(payload)}"


def decode(header: str | None, key: bytes | DecisionSigner) -> Decision:
    """The decision in `header`; raises InvalidDecision if it is missing or not signed by `key`."""
    if not header:
        raise InvalidDecision("missing decision")
    version, _, rest = header.partition(".")
    payload, _, signature = rest.partition(".")
    signer = key if isinstance(key, DecisionSigner) else DecisionSigner(key)
    expected = signer.sign(payload.encode("utf-8", "replace")).encode()
    if version != _VERSION or not hmac.compare_digest(signature.encode("utf-8", "replace"), expected):
        raise InvalidDecision("bad decision signature")
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["deployments"] = tuple(data["deployments"])
    data["endpoint"] = EndpointKind(data.get("endpoint", EndpointKind.CHAT))
    return Decision(**data)


# HMAC's padded keys (RFC 2104): `translate` XORs every byte of the block-sized key in one C pass.
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))
_SHA256_BLOCK = 64
# The signature stays base64url (sidecars from before the payload's alphabet changed compare it as
# text): base64 with `+/` translated, as base64.urlsafe_b64encode does, without its two Python calls.
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class DecisionSigner:
    """HMAC-SHA256 under one key, the header's signature (first 18 bytes, base64url).

    The two padded key blocks are hashed once here; each signature then copies those two hash
    states (RFC 2104's construction, the same bytes as `hmac.digest`), which costs half of
    OpenSSL's one-shot HMAC, whose set-up per call (fetching the MAC, hashing the key) is most
    of the work for a header-sized message. Build one per key and keep it (the callout: per app).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        block = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))

    def sign(self, payload: bytes) -> str:
        """The base64url signature (24 characters) of `payload`."""
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return binascii.b2a_base64(outer.digest()[:18], newline=False).translate(_URLSAFE).decode()
