"""Renders the Envoy config (`envoy.yaml.tmpl`, package data beside this module) from Settings,
so Envoy and the sidecar agree on ports and limits. An installed wheel carries the template."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from sidecar.settings import SENTINEL_503, Settings

TEMPLATE_PATH = Path(__file__).resolve().parent / "envoy.yaml.tmpl"
# Room for headers on top of the largest body ext_authz may buffer.
_BUFFER_HEADROOM_BYTES = 1024 * 1024


def sidecar_address(settings: Settings) -> str:
    """The sidecar cluster's endpoint address (Envoy's config.core.v3.Address, flow style): a `pipe`
    for `settings.sidecar_socket`, else `socket_address` 127.0.0.1:`sidecar_port`."""
    if settings.sidecar_socket:
        return "{pipe: {path: " + json.dumps(settings.sidecar_socket) + "}}"
    return f"{{socket_address: {{address: 127.0.0.1, port_value: {settings.sidecar_port}}}}}"


def render(settings: Settings, template_path: Path = TEMPLATE_PATH) -> str:
    """The Envoy bootstrap YAML: the packaged template (`envoy.yaml.tmpl`) with the settings' ports, limits and
    timeouts.
    """
    template = Template(template_path.read_text(encoding="utf-8"))
    return template.substitute(
        LISTEN_ADDRESS=settings.listen_address,
        LISTEN_PORT=settings.listen_port,
        SIDECAR_PORT=settings.sidecar_port,
        SIDECAR_ADDRESS=sidecar_address(settings),
        ADMIN_PORT=settings.admin_port,
        METRICS_PORT=settings.metrics_port,
        MAX_BODY_BYTES=settings.max_body_bytes,
        BUFFER_LIMIT_BYTES=settings.max_body_bytes + _BUFFER_HEADROOM_BYTES,
        AUTHZ_TIMEOUT_SECONDS=settings.authz_timeout_seconds,
        DRAIN_SECONDS=settings.drain_seconds,
        SENTINEL_503=SENTINEL_503,
        REQUEST_HEADERS_TIMEOUT_SECONDS=settings.request_headers_timeout_seconds,
        REQUEST_TIMEOUT_SECONDS=settings.request_timeout_seconds,
        MAX_HEAP_BYTES=settings.envoy_max_heap_bytes,
        MAX_CONNECTIONS=settings.envoy_max_connections,
    )
