"""The keys of a `type: webhook` guardrail (the guardrail-wide ones are read by guardrails_schema).

    url: http://detector.internal:8000/check          # required, http:// or https://
    api_key: {env: DETECTOR_KEY}                       # or {file: /var/run/secrets/…}: Authorization: Bearer …
    headers: {X-Team: payments, X-Api-Key: {env: DETECTOR_API_KEY}}   # text, or a credential
    timeout: 500ms                                     # or {connect: 100ms, total: 500ms}
    on_error: closed                                   # open | closed (default: closed; open for action: log)
    threshold: 0.8                                     # findings with a lower score do not count
    max_connections: 32                                # connections (concurrent calls) to this detector
    stream_chars: 512                                  # streams: one call per this many characters held
    breaker: {consecutive_failures: 3, cooldown: 10s}  # as a provider's breaker
"""

from __future__ import annotations

from dataclasses import replace

from sidecar.core.credentials import Credential
from sidecar.core.guardrail_webhook import DEFAULT_BREAKER, OnError, WebhookConfig
from sidecar.policy.breaker_schema import parse_breaker
from sidecar.policy.models_schema import _credential  # the providers' own {env|file} reader
from sidecar.policy.reader import Located, Mapping

WEBHOOK_KEYS: frozenset[str] = frozenset({"url", "api_key", "headers", "timeout", "on_error", "threshold",
                                          "max_connections", "stream_chars", "breaker"})
_ON_ERROR = tuple(kind.value for kind in OnError)


def parse_webhook(fields: Mapping, action: str | None) -> WebhookConfig | None:
    """The webhook keys of one guardrail entry (`fields`, its other keys read elsewhere) as a
    WebhookConfig (durations in seconds); None when `url` is missing or invalid. Errors are
    reported on `fields` (FILE:LINE: KEY: message), never raised. `action` (`block`/`mask`/`log`)
    chooses the default `on_error`: open for `log`, closed otherwise."""
    url_at = fields.require("url")
    url = url_at.as_str() if url_at else None
    if url_at is not None and url is not None and not url.startswith(("http://", "https://")):
        url_at.error("must start with http:// or https://")
        url = None
    api_key_at = fields.get("api_key")
    headers_at = fields.get("headers")
    timeout_at = fields.get("timeout")
    connect, total = _timeouts(timeout_at) if timeout_at else (None, None)
    default_on_error = OnError.OPEN if action == "log" else OnError.CLOSED
    breaker_at = fields.get("breaker")
    config = WebhookConfig(
        url=url or "",
        api_key=_credential(api_key_at) if api_key_at else Credential(),
        headers=tuple(_headers(headers_at).items()) if headers_at else (),
        on_error=OnError(fields.read("on_error", lambda w: w.as_choice(_ON_ERROR), default_on_error.value)),
        threshold=fields.read("threshold", lambda w: w.as_number(0.0, 1.0), None),
        max_connections=fields.read("max_connections", lambda w: w.as_int(minimum=1), 32),
        stream_chars=fields.read("stream_chars", lambda w: w.as_int(minimum=16), 512),
        breaker=parse_breaker(breaker_at, DEFAULT_BREAKER) if breaker_at else DEFAULT_BREAKER,
    )
    if total is not None:
        config = replace(config, timeout=total, connect_timeout=min(connect or config.connect_timeout, total))
    return config if url else None


def _timeouts(where: Located) -> tuple[float | None, float | None]:
    """`500ms` (the whole call), or `{connect, total}` as a deployment's timeouts spell them."""
    if where.node.tag.endswith(":map"):
        fields = where.mapping()
        assert fields is not None
        connect = fields.read("connect", _positive, None)
        total = fields.read("total", _positive, None)
        fields.finish()
        return connect, total
    return None, _positive(where)


def _positive(where: Located) -> float | None:
    value = where.as_duration()
    if value is not None and value <= 0:
        where.error("must be longer than zero")
        return None
    return value


def _headers(where: Located) -> dict[str, str | Credential]:
    fields = where.mapping()
    if fields is None:
        return {}
    headers: dict[str, str | Credential] = {}
    for name, value_at in fields.named():
        value = _credential(value_at) if value_at.node.tag.endswith(":map") else value_at.as_str()
        if value is not None:
            headers[name] = value
    return headers
