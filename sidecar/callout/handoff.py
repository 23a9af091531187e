"""The callout's decision, handed to the forwarding path in one signed header.

Envoy copies `x-cgt-decision` from the callout's 200 answer onto the routed request (and strips
any client-sent `x-cgt-*` before the callout). A header, unlike in-process state, reaches the
forwarding path whichever sidecar worker process serves it; the HMAC makes sure only the
callout could have written it, so the forwarding path trusts it and repeats no policy work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.core.endpoints import EndpointKind

DECISION_HEADER = "x-cgt-decision"
_VERSION = "v1"
# Envoy reads the callout's answer headers with a 60 KiB limit (a larger one fails the callout:
# 503), and the sidecar must accept the header on the forwarding path: stages bound what they put
# in `extra` so the encoded header stays below this.
MAX_DECISION_HEADER_BYTES = 48 * 1024


class InvalidDecision(Exception):
    pass


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
    # Filled by later stages (guardrail masks, quota reservations) without changing the wire.
    extra: dict[str, Any] = field(default_factory=dict)
    # Which client endpoint was decided: the forwarding path serves and books it accordingly.
    endpoint: EndpointKind = EndpointKind.CHAT


def encode(decision: Decision, key: bytes) -> str:
    # orjson serializes the dataclass itself, many times faster than dumps(asdict(...)).
    payload = base64.urlsafe_b64encode(orjson.dumps(decision)).rstrip(b"=")
    return f"{_VERSION}.{payload.decode()}.{_sign(payload, key)}"


def decode(header: str | None, key: bytes) -> Decision:
    if not header:
        raise InvalidDecision("missing decision")
    version, _, rest = header.partition(".")
    payload, _, signature = rest.partition(".")
    expected = _sign(payload.encode("utf-8", "replace"), key).encode()
    if version != _VERSION or not hmac.compare_digest(signature.encode("utf-8", "replace"), expected):
        raise InvalidDecision("bad decision signature")
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["deployments"] = tuple(data["deployments"])
    data["endpoint"] = EndpointKind(data.get("endpoint", EndpointKind.CHAT))
    return Decision(**data)


def _sign(payload: bytes, key: bytes) -> str:
    digest = hmac.digest(key, payload, hashlib.sha256)[:18]  # one-shot: OpenSSL's HMAC, no Python object
    return base64.urlsafe_b64encode(digest).decode()
