"""Client API tokens (`cgt_…`): policies store only their SHA-256, with a name, team and scope."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecar.core.errors import AuthenticationFailed, PermissionDenied

TOKEN_PREFIX = "cgt_"
_PLAIN_BEARER = "Bearer " + TOKEN_PREFIX


@dataclass(frozen=True)
class TokenRecord:
    """One client token of the policy: its name, SHA-256 (hex) of the token, team, allowed models, expiry (UTC)."""

    name: str
    sha256: str
    team: str | None = None
    models: frozenset[str] | None = None  # None: every model
    expires: datetime | None = None

    def allows_model(self, model_key: str) -> bool:
        """Whether the token may use `model_key` (None models: every model)."""
        return self.models is None or model_key in self.models


@dataclass(frozen=True)
class TokenStore:
    """The policy's tokens by the SHA-256 hex of the token string."""

    by_hash: Mapping[str, TokenRecord]

    def authenticate(self, authorization: str | None, now: datetime | None = None) -> TokenRecord:
        """The record for an `Authorization: Bearer cgt_…` header; raises AuthenticationFailed (401) with a code saying
        why.
        """
        if authorization is not None and authorization.startswith(_PLAIN_BEARER) and not authorization[-1].isspace():
            # What clients send, `Bearer cgt_…` without padding: what _bearer_token returns for it.
            token = authorization[len("Bearer "):]
        else:
            token = _bearer_token(authorization)
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()  # hash_token, without its call
        record = self.by_hash.get(digest)
        # The lookup is keyed by the hash, so its timing says nothing about the token itself;
        # the constant-time compare keeps the final check free of early exits as well.
        if record is None or not hmac.compare_digest(record.sha256, digest):
            raise AuthenticationFailed("Invalid API token")
        if record.expires is not None and (now or datetime.now(UTC)) >= record.expires:
            raise AuthenticationFailed("API token has expired", code="token_expired")
        return record

    @staticmethod
    def check_model(record: TokenRecord, model_key: str) -> None:
        """Raises PermissionDenied (403, param `model`) when the token may not use `model_key`."""
        if not record.allows_model(model_key):
            raise PermissionDenied(f"This token may not use the model '{model_key}'", param="model")


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed("Missing API token: send 'Authorization: Bearer cgt_…'", code="missing_api_key")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("Use the Bearer scheme: 'Authorization: Bearer cgt_…'", code="invalid_auth_scheme")
    if not token.startswith(TOKEN_PREFIX):
        raise AuthenticationFailed("Invalid API token")
    return token


def hash_token(token: str) -> str:
    """SHA-256 of the token, lowercase hex (what policies store under `sha256`)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint_token() -> str:
    """A new random client token: `cgt_` + 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
