"""Building HTTP responses in the gateway's one error shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from sidecar.core.errors import GatewayError

JSON_CONTENT_TYPE = "application/json"
log = logging.getLogger("sidecar")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: GatewayError, request_id: str, *, status: int | None = None) -> web.Response:
    headers = {"X-Request-Id": request_id, **error.headers}
    return web.Response(
        status=status if status is not None else error.status,
        body=error.body(),
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )


@web.middleware
async def unexpected_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The last line of defence: a bug answers OpenAI-style JSON, never a traceback page.

    On the callout a 500 makes Envoy fail closed (JSON 503); on the forwarding path the client
    gets a JSON 500 with the request id.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        request_id = request.headers.get("X-Request-Id", "")
        log.exception("unexpected error", extra={"fields": {"request_id": request_id, "path": request.path}})
        return error_response(GatewayError("Internal gateway error", code="internal_error"), request_id)
