"""`limits:` section: rate limits, quotas and budgets, their counter store and prices."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sidecar.core.limits import (
    KINDS,
    MICRO_USD,
    PER_FIELDS,
    STORE_BACKENDS,
    Limit,
    LimitKind,
    LimitsPolicy,
    ModelQuotaSettings,
    PerField,
    Price,
    StoreConfig,
)
from sidecar.core.routes import ModelRegistry
from sidecar.core.tokens import TokenStore
from sidecar.policy.reader import Located

BackendErrorMode = Literal["open", "closed"]
"""`on_backend_error`: admit (open) or refuse (closed) when the counter store is unreachable."""
BACKEND_ERROR_MODES: tuple[BackendErrorMode, ...] = ("open", "closed")


def parse_limits(section: Located, tokens: TokenStore, models: ModelRegistry) -> LimitsPolicy:
    """The `limits:` section -> LimitsPolicy; token and model names are checked against the other sections."""
    fields = section.mapping()
    if fields is None:
        return LimitsPolicy()
    default = LimitsPolicy()
    timezone = fields.read("timezone", _zone, default.timezone)
    store_at = fields.get("store")
    store = _store(store_at) if store_at else StoreConfig()
    estimate_at = fields.get("estimate")
    chars_per_token, completion_tokens = _estimate(estimate_at, default) if estimate_at else (
        default.chars_per_token, default.completion_tokens)
    models_at = fields.get("models")
    model_settings = _models(models_at, models) if models_at else {}
    rules_at = fields.get("rules")
    limits = _rules(rules_at, tokens, models) if rules_at else ()
    fields.finish()
    return LimitsPolicy(limits, timezone, store, chars_per_token, completion_tokens, model_settings)


def _zone(where: Located) -> str | None:
    name = where.as_str()
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        where.error(f"unknown time zone '{name}' (use an IANA name such as UTC or Europe/Berlin)")
        return None
    return name


def _store(where: Located) -> StoreConfig:
    fields = where.mapping()
    if fields is None:
        return StoreConfig()
    default = StoreConfig()
    backend = fields.read("backend", lambda w: w.as_choice(STORE_BACKENDS), default.backend)
    state_dir = fields.read("state_dir", Located.as_str, None)
    redis_url = fields.read("redis_url", Located.as_str, None)
    if backend == "redis" and redis_url is None:
        where.error("the redis backend needs redis_url (e.g. redis_url: ${REDIS_URL})")
    elif redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        fields.entries["redis_url"].error("must start with redis://, rediss:// or unix://")
    store = StoreConfig(
        backend=backend,
        state_dir=Path(state_dir) if state_dir else None,
        flush_interval=fields.read("flush_interval", _positive_duration, default.flush_interval),
        redis_url=redis_url,
        key_prefix=fields.read("key_prefix", Located.as_str, default.key_prefix),
        timeout=fields.read("timeout", _positive_duration, default.timeout),
    )
    fields.finish()
    return store


def _positive_duration(where: Located) -> float | None:
    value = where.as_duration()
    if value is not None and value <= 0:
        where.error("must be more than zero")
        return None
    return value


def _estimate(where: Located, default: LimitsPolicy) -> tuple[float, int]:
    fields = where.mapping()
    if fields is None:
        return default.chars_per_token, default.completion_tokens
    chars = fields.read("chars_per_token", lambda w: w.as_number(minimum=0.5, maximum=100.0), default.chars_per_token)
    completion = fields.read("completion_tokens", lambda w: w.as_int(minimum=1), default.completion_tokens)
    fields.finish()
    return chars, completion


def _models(where: Located, models: ModelRegistry) -> dict[str, ModelQuotaSettings]:
    mapping = where.mapping()
    if mapping is None:
        return {}
    result = {}
    for key, entry in mapping.named():
        if key not in models.routes:
            entry.error(f"unknown model '{key}'")
        fields = entry.mapping()
        if fields is None:
            continue
        completion = fields.read("completion_tokens", lambda w: w.as_int(minimum=1), None)
        price_at = fields.get("price")
        price = _price(price_at) if price_at else None
        fields.finish()
        result[key] = ModelQuotaSettings(completion, price)
    return result


def _price(where: Located) -> Price | None:
    fields = where.mapping()
    if fields is None:
        return None
    prompt = fields.read("prompt", lambda w: w.as_number(minimum=0.0, maximum=1e6), 0.0)
    completion = fields.read("completion", lambda w: w.as_number(minimum=0.0, maximum=1e6), 0.0)
    fields.finish()
    return Price(prompt, completion)


def _rules(where: Located, tokens: TokenStore, models: ModelRegistry) -> tuple[Limit, ...]:
    mapping = where.mapping()
    if mapping is None:
        return ()
    limits: list[Limit] = []
    for name, entry in mapping.named():
        limits.extend(_rule(name, entry, tokens, models))
    return tuple(limits)


def _rule(name: str, where: Located, tokens: TokenStore, models: ModelRegistry) -> list[Limit]:
    fields = where.mapping()
    if fields is None:
        return []
    match_at = fields.get("match")
    token_names, teams, model_keys = _match(match_at, tokens, models) if match_at else (None, None, None)
    per_at = fields.get("per")
    per = _per(per_at) if per_at else ("token",)
    shadow = fields.read("shadow", Located.as_bool, False)
    on_error = fields.read("on_backend_error", lambda w: w.as_choice(BACKEND_ERROR_MODES), "open")
    caps = {kind: cap for kind in KINDS if (cap := _cap(fields.get(kind), kind)) is not None}
    fields.finish()
    if not caps and not any(kind in fields.entries for kind in KINDS):
        where.error(f"give at least one limit: {', '.join(KINDS)}")
    return [Limit(name, kind, cap, per, token_names, teams, model_keys, shadow, on_error == "open")
            for kind, cap in caps.items()]


def _cap(where: Located | None, kind: LimitKind) -> int | None:
    if where is None:
        return None
    if KINDS[kind].unit == "spend":
        usd = where.as_number(minimum=0.000001, maximum=1e9)
        return None if usd is None else round(usd * MICRO_USD)
    return where.as_int(minimum=1)


def _per(where: Located) -> tuple[PerField, ...]:
    values = where.str_list()
    if values is None:
        return ("token",)
    unknown = [v for v in values if v not in PER_FIELDS]
    if unknown or len(set(values)) != len(values):
        where.error(f"must list distinct values out of {', '.join(PER_FIELDS)} ([] means one shared counter)")
        return ("token",)
    return tuple(field for field in PER_FIELDS if field in values)  # in PER_FIELDS' order


def _match(where: Located, tokens: TokenStore, models: ModelRegistry) -> tuple[
        frozenset[str] | None, frozenset[str] | None, frozenset[str] | None]:
    fields = where.mapping()
    if fields is None:
        return None, None, None
    token_names = {record.name for record in tokens.by_hash.values()}
    found: list[frozenset[str] | None] = []
    for key, known in (("tokens", token_names), ("teams", None), ("models", set(models.routes))):
        at = fields.get(key)
        values = at.str_list() if at else None
        if at is not None and values is not None and known is not None:
            for value in values:
                if value not in known:
                    at.error(f"unknown {key[:-1]} '{value}'")
        found.append(frozenset(values) if values is not None else None)
    fields.finish()
    return found[0], found[1], found[2]
