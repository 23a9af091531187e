"""`providers:` and `models:` sections: where each model key is served from."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from sidecar.core.credentials import Credential
from sidecar.core.endpoints import EMBEDDING_CATEGORY
from sidecar.core.routes import (
    BreakerConfig,
    Deployment,
    MaxTokensField,
    ModelRegistry,
    ModelRoute,
    ProviderType,
    Timeouts,
)
from sidecar.policy.breaker_schema import parse_breaker
from sidecar.policy.reader import Located, Mapping
from sidecar.policy.references import check_reference
from sidecar.providers.registry import (
    EMBEDDING_PROVIDER_TYPES,
    PROVIDER_TYPES,
    auto_max_tokens_field,
    auto_stream_include_usage,
)

AUTO = "auto"
_MAX_TOKENS_FIELDS: tuple[MaxTokensField, ...] = ("max_completion_tokens", "max_tokens")


@dataclass(frozen=True)
class ProviderConfig:
    """One `providers:` entry as read: type, base URL, credential, headers, timeouts (seconds), breaker."""

    name: str
    type: ProviderType
    base_url: str
    credential: Credential
    headers: dict[str, str]
    api_version: str | None
    timeouts: Timeouts
    breaker: BreakerConfig
    stream_include_usage: bool | None = None  # None: auto (by type and api_version)
    max_tokens_field: MaxTokensField | None = None  # None: auto

    def include_usage(self, override: bool | None) -> bool:
        """A deployment's `stream_include_usage`: its own, else the provider's, else automatic."""
        for value in (override, self.stream_include_usage):
            if value is not None:
                return value
        return auto_stream_include_usage(self.type, self.api_version)

    def cap_field(self, override: MaxTokensField | None) -> MaxTokensField:
        """A deployment's `max_tokens_field`: its own, else the provider's, else automatic."""
        return override or self.max_tokens_field or auto_max_tokens_field(self.type, self.base_url, self.api_version)


def parse_providers(section: Located, default_breaker: BreakerConfig | None = None) -> dict[str, ProviderConfig]:
    """The `providers:` section -> ProviderConfig by name; a provider's own `breaker:` overrides `default_breaker`."""
    providers: dict[str, ProviderConfig] = {}
    mapping = section.mapping()
    if mapping is None:
        return providers
    for name, where in mapping.named():
        config = _parse_provider(name, where, default_breaker or BreakerConfig())
        if config is not None:
            providers[name] = config
    return providers


def _parse_provider(name: str, where: Located, default_breaker: BreakerConfig) -> ProviderConfig | None:
    fields = where.mapping()
    if fields is None:
        return None
    type_at = fields.require("type")
    type_name = type_at.as_choice(tuple(sorted(PROVIDER_TYPES))) if type_at else None
    provider_type = ProviderType(type_name) if type_name else None
    url_at = fields.require("base_url")
    base_url = url_at.as_str() if url_at else None
    if url_at is not None and base_url is not None and not base_url.startswith(("http://", "https://")):
        url_at.error("must start with http:// or https://")
        base_url = None
    api_key_at = fields.get("api_key")
    credential = _credential(api_key_at) if api_key_at else Credential()
    headers_at = fields.get("headers")
    headers = _headers(headers_at) if headers_at else {}
    api_version = fields.read("api_version", _version_string, None)
    if provider_type is ProviderType.AZURE and api_version is None:
        where.error("azure providers need api_version")
    timeouts_at = fields.get("timeouts")
    timeouts = _timeouts(timeouts_at) if timeouts_at else Timeouts()
    breaker_at = fields.get("breaker")
    breaker = parse_breaker(breaker_at, default_breaker) if breaker_at else default_breaker
    include_usage, cap_field = _include_usage(fields), _cap_field(fields)
    fields.finish()
    if provider_type is None or base_url is None:
        return None
    return ProviderConfig(name, provider_type, base_url, credential, headers, api_version, timeouts, breaker,
                          include_usage, cap_field)


def _include_usage(fields: Mapping) -> bool | None:
    """`stream_include_usage`: `auto` (None, the default), `true` or `false`."""
    where = fields.get("stream_include_usage")
    value = where.scalar() if where is not None else AUTO
    if isinstance(value, bool):
        return value
    if value != AUTO and where is not None:
        where.error("must be auto, true or false")
    return None


def _cap_field(fields: Mapping) -> MaxTokensField | None:
    """`max_tokens_field`: `auto` (None, the default), `max_completion_tokens` or `max_tokens`."""
    where = fields.get("max_tokens_field")
    value = where.as_choice((AUTO, *_MAX_TOKENS_FIELDS)) if where is not None else AUTO
    return next((f for f in _MAX_TOKENS_FIELDS if f == value), None)


def _version_string(where: Located) -> str | None:
    # An unquoted 2024-06-01 is a YAML date; Azure's api-version is that same text.
    value = where.scalar()
    return value.isoformat() if isinstance(value, date) else where.as_str()


def _credential(where: Located) -> Credential:
    fields = where.mapping()
    if fields is None:
        return Credential()
    env = fields.read("env", Located.as_str, None)
    file = fields.read("file", Located.as_str, None)
    fields.finish()
    if (env is None) == (file is None):
        where.error("give exactly one of env (a variable name) or file (a mounted secret's path)")
        return Credential()
    return Credential(env=env, file=Path(file) if file else None)


def _headers(where: Located) -> dict[str, str]:
    fields = where.mapping()
    if fields is None:
        return {}
    headers = {}
    for name, value_at in fields.named():
        value = value_at.as_str()
        if value is not None:
            headers[name] = value
    return headers


def _timeouts(where: Located, base: Timeouts | None = None) -> Timeouts:
    """Keys not given keep `base` (the provider's, for a deployment's own `timeouts`)."""
    default = base or Timeouts()
    fields = where.mapping()
    if fields is None:
        return default
    timeouts = Timeouts(
        connect=fields.read("connect", Located.as_duration, default.connect),
        first_byte=fields.read("first_byte", Located.as_duration, default.first_byte),
        idle=fields.read("idle", Located.as_duration, default.idle),
        total=fields.read("total", Located.as_duration, default.total),
    )
    fields.finish()
    return timeouts


def parse_models(section: Located, providers: dict[str, ProviderConfig],
                 defined_providers: Collection[str] = ()) -> ModelRegistry:
    """`defined_providers`: every provider name in the policy, valid or not (a broken provider is
    reported where it is defined, not again at each deployment that uses it)."""
    routes: dict[str, ModelRoute] = {}
    mapping = section.mapping()
    if mapping is None:
        return ModelRegistry(routes)
    known = _Providers(providers, frozenset(defined_providers) | frozenset(providers))
    for key, where in mapping.named():
        route = _parse_model(key, where, known)
        if route is not None:
            routes[key] = route
    return ModelRegistry(routes)


@dataclass(frozen=True)
class _Providers:
    valid: dict[str, ProviderConfig]
    defined: frozenset[str]


def _parse_model(key: str, where: Located, providers: _Providers) -> ModelRoute | None:
    fields = where.mapping()
    if fields is None:
        return None
    category = fields.read("category", Located.as_str, "llm")
    deployments_at = fields.require("deployments")
    parsed = [] if deployments_at is None else [(item, _parse_deployment(item, providers, index))
                                                 for index, item in enumerate(deployments_at.items())]
    deployments = [d for _, d in parsed if d is not None]
    fields.finish()
    empty_list = isinstance(deployments_at.node, yaml.SequenceNode) and not deployments_at.node.value \
        if deployments_at is not None else False
    if deployments_at is not None and (empty_list or deployments_at.scalar() is None):
        deployments_at.error("must list at least one deployment")
    if not deployments:
        return None
    seen: set[str] = set()
    for item, deployment in parsed:
        if deployment is not None and deployment.name in seen:
            # Breaker state and fallbacks are kept per deployment name, so names must be unique.
            item.error(f"deployment '{deployment.name}' is listed twice")
        seen.add(deployment.name if deployment else "")
        if category == EMBEDDING_CATEGORY and deployment is not None \
                and deployment.provider not in EMBEDDING_PROVIDER_TYPES:
            item.error(f"provider type '{deployment.provider}' cannot serve embeddings "
                       f"(use {' or '.join(sorted(EMBEDDING_PROVIDER_TYPES))})")
    return ModelRoute(key=key, category=category, deployments=tuple(deployments))


def _parse_deployment(where: Located, known: _Providers, index: int) -> Deployment | None:
    fields = where.mapping()
    if fields is None:
        return None
    provider_at = fields.require("provider")
    provider_name = provider_at.as_str() if provider_at else None
    upstream_model = fields.read("model", Located.as_str, None)
    if fields.get("model") is None:
        fields.require("model")
    default_max_tokens = fields.read("default_max_tokens", lambda w: w.as_int(minimum=1), 4096)
    # Without explicit priorities, deployments are tried in the order they are listed.
    priority = fields.read("priority", lambda w: w.as_int(minimum=0), index)
    weight = fields.read("weight", lambda w: w.as_number(minimum=0.001, maximum=1e6), 1.0)
    timeouts_at = fields.get("timeouts")
    include_usage, cap_field = _include_usage(fields), _cap_field(fields)
    fields.finish()
    if provider_at is not None and provider_name is not None and provider_name not in known.valid:
        check_reference(provider_at, "provider", provider_name, known.defined)
        return None
    if provider_name is None or upstream_model is None:
        return None
    provider = known.valid[provider_name]
    return Deployment(
        name=f"{provider_name}/{upstream_model}",
        provider=provider.type,
        base_url=provider.base_url,
        upstream_model=upstream_model,
        credential=provider.credential,
        headers=provider.headers,
        api_version=provider.api_version,
        default_max_tokens=default_max_tokens,
        stream_include_usage=provider.include_usage(include_usage),
        max_tokens_field=provider.cap_field(cap_field),
        timeouts=_timeouts(timeouts_at, provider.timeouts) if timeouts_at else provider.timeouts,
        breaker=provider.breaker,
        priority=priority,
        weight=weight,
    )
