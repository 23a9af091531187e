"""Building HTTP responses in the gateway's one error shape."""

from __future__ import annotations

from aiohttp import web

from sidecar.errors import GatewayError

JSON_CONTENT_TYPE = "application/json"


def error_response(error: GatewayError, request_id: str, *, status: int | None = None) -> web.Response:
    headers = {"X-Request-Id": request_id, **error.headers}
    return web.Response(
        status=status if status is not None else error.status,
        body=error.body(),
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )
