"""Client tokens: hashing, minting, Bearer authentication, expiry and the model allow-list."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from sidecar.core.errors import AuthenticationFailed, PermissionDenied
from sidecar.core.tokens import TOKEN_PREFIX, TokenRecord, TokenStore, hash_token, mint_token

TOKEN = "cgt_unit_test_token_value"
EXPIRES = datetime(2027, 1, 31, tzinfo=UTC)


def store(*records: TokenRecord) -> TokenStore:
    return TokenStore({r.sha256: r for r in records})


def record(name: str = "t", token: str = TOKEN, **kwargs: object) -> TokenRecord:
    return TokenRecord(name=name, sha256=hash_token(token), **kwargs)  # type: ignore[arg-type]


def auth_error(tokens: TokenStore, header: str | None, now: datetime | None = None) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        tokens.authenticate(header, now=now)
    assert caught.value.status == 401
    assert caught.value.error_type == "authentication_error"
    return caught.value


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("cgt_abc") == hashlib.sha256(b"cgt_abc").hexdigest()
    assert hash_token("cgt_demo_Jm3kQ8vYx2LrT9pWn4HsZ6bC1dF7gK0a") == (
        "0fb023c22f098f6159890cb1c5b5ab288be329d09ffe6743a0b7942e0866a850"
    )


def test_hash_token_encodes_utf8() -> None:
    assert hash_token("cgt_é") == hashlib.sha256("cgt_é".encode()).hexdigest()


def test_mint_token_format() -> None:
    token = mint_token()
    assert token.startswith(TOKEN_PREFIX) and TOKEN_PREFIX == "cgt_"
    # 32 random bytes, URL-safe base64 without padding: 43 characters.
    assert len(token) == len("cgt_") + 43
    assert re.fullmatch(r"cgt_[A-Za-z0-9_-]{43}", token)


def test_mint_token_is_unique() -> None:
    assert len({mint_token() for _ in range(200)}) == 200


def test_minted_token_authenticates() -> None:
    token = mint_token()
    rec = record(token=token)
    assert store(rec).authenticate(f"Bearer {token}") is rec


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header(header: str | None) -> None:
    error = auth_error(store(record()), header)
    assert error.code == "missing_api_key"
    assert error.message == "Missing API token: send 'Authorization: Bearer cgt_…'"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", f"Token {TOKEN}", TOKEN, "Bearer", "Bearer   ",
                                    f"Bearer{TOKEN}"])
def test_wrong_scheme_or_no_token(header: str) -> None:
    error = auth_error(store(record()), header)
    assert error.code == "invalid_auth_scheme"


@pytest.mark.parametrize("header", [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer   {TOKEN}  "])
def test_scheme_is_case_insensitive_and_whitespace_tolerant(header: str) -> None:
    rec = record()
    assert store(rec).authenticate(header) is rec


def test_non_cgt_token() -> None:
    # Even a token whose hash is known is refused without the prefix.
    rec = record(token="sk-live-abc")
    error = auth_error(store(rec), "Bearer sk-live-abc")
    assert error.code == "invalid_api_key"
    assert error.message == "Invalid API token"


def test_unknown_token() -> None:
    error = auth_error(store(record()), "Bearer cgt_someone_else")
    assert error.code == "invalid_api_key"
    assert error.message == "Invalid API token"


def test_valid_token_returns_its_record() -> None:
    rec = record(team="t-1", models=frozenset({"gpt-4"}))
    other = record(name="other", token="cgt_other")
    assert store(other, rec).authenticate(f"Bearer {TOKEN}") is rec


def test_expired_token() -> None:
    tokens = store(record(expires=EXPIRES))
    error = auth_error(tokens, f"Bearer {TOKEN}", now=EXPIRES + timedelta(seconds=1))
    assert error.code == "token_expired"
    assert error.message == "API token has expired"


def test_token_expires_exactly_at_its_expiry() -> None:
    tokens = store(record(expires=EXPIRES))
    assert auth_error(tokens, f"Bearer {TOKEN}", now=EXPIRES).code == "token_expired"


def test_token_valid_before_expiry() -> None:
    rec = record(expires=EXPIRES)
    assert store(rec).authenticate(f"Bearer {TOKEN}", now=EXPIRES - timedelta(seconds=1)) is rec


def test_expiry_checked_against_the_real_clock_without_now() -> None:
    past = record(expires=datetime(2000, 1, 1, tzinfo=UTC))
    assert auth_error(store(past), f"Bearer {TOKEN}").code == "token_expired"


def test_check_model_allows_listed_model() -> None:
    TokenStore.check_model(record(models=frozenset({"gpt-4", "claude"})), "gpt-4")


def test_check_model_without_list_allows_everything() -> None:
    TokenStore.check_model(record(models=None), "anything")


def test_check_model_denies_unlisted_model() -> None:
    with pytest.raises(PermissionDenied) as caught:
        TokenStore.check_model(record(models=frozenset({"gpt-4"})), "claude")
    error = caught.value
    assert (error.status, error.param, error.code) == (403, "model", "model_not_allowed")
    assert error.message == "This token may not use the model 'claude'"


def test_check_model_empty_list_denies_everything() -> None:
    with pytest.raises(PermissionDenied):
        TokenStore.check_model(record(models=frozenset()), "gpt-4")
