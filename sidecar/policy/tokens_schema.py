"""`tokens:` section: name -> {sha256, team, models, expires}."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

from sidecar.core.tokens import TokenRecord, TokenStore
from sidecar.policy.reader import Located

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def parse_tokens(section: Located, known_models: Collection[str]) -> TokenStore:
    """The `tokens:` section -> TokenStore; models must be among `known_models`, sha256 64 lowercase hex digits."""
    records: dict[str, TokenRecord] = {}
    mapping = section.mapping()
    if mapping is None:
        return TokenStore({})
    for name, where in mapping.named():
        record = _parse_token(name, where, known_models)
        if record is None:
            continue
        if record.sha256 in records:
            where.error(f"same sha256 as token '{records[record.sha256].name}'")
            continue
        records[record.sha256] = record
    return TokenStore(records)


def _parse_token(name: str, where: Located, known_models: Collection[str]) -> TokenRecord | None:
    fields = where.mapping()
    if fields is None:
        return None
    digest_at = fields.require("sha256")
    digest = digest_at.as_str() if digest_at else None
    if digest_at is not None and digest is not None and not _SHA256_HEX.match(digest):
        digest_at.error("must be 64 lowercase hex characters (python -m sidecar token new prints it)")
        digest = None
    team = fields.read("team", Located.as_str, None)
    models_at = fields.get("models")
    models = models_at.str_list() if models_at else None
    if models_at is not None and models is not None:
        for item, key in zip(models_at.items(), models, strict=True):
            if key not in known_models:  # on the item's own line: a block list spans several
                item.log.add(item.file, item.node, models_at.path, f"unknown model '{key}'")
    expires_at = fields.get("expires")
    expires = _expiry(expires_at) if expires_at else None
    fields.finish()
    if digest is None:
        return None
    return TokenRecord(
        name=name,
        sha256=digest,
        team=team,
        models=frozenset(models) if models is not None else None,
        expires=expires,
    )


def _expiry(where: Located) -> datetime | None:
    value = where.scalar()
    if isinstance(value, str):
        # Quoted, or from `${VAR}`: YAML left it a string; read it as the unquoted form would be.
        value = _iso_moment(value.strip())
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        # A date names the last day the token works (`expires: 2027-01-31` works all that day, UTC),
        # as a card's or a certificate's date does: it expires when the next day begins.
        return datetime(value.year, value.month, value.day, tzinfo=UTC) + timedelta(days=1)
    where.error("must be a date or timestamp such as 2027-01-31 or 2027-01-31T12:00:00Z")
    return None


def _iso_moment(text: str) -> date | datetime | str:
    """`2027-01-31` as a date, `2027-01-31T12:00:00Z` (or with a space, or an offset) as a
    datetime; anything else unchanged, for the caller's error."""
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
