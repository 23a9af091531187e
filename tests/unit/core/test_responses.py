"""The error middleware: a bug becomes OpenAI-style JSON with the request id."""

from __future__ import annotations

from aiohttp import web
from pytest_aiohttp.plugin import AiohttpClient

from sidecar.responses import unexpected_errors


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def _not_found(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def test_unexpected_exception_is_json_500(aiohttp_client: AiohttpClient) -> None:
    app = web.Application(middlewares=[unexpected_errors])
    app.router.add_get("/broken", _broken)
    app.router.add_get("/missing", _not_found)
    client = await aiohttp_client(app)
    response = await client.get("/broken", headers={"X-Request-Id": "req_x"})
    assert response.status == 500
    assert response.headers["X-Request-Id"] == "req_x"
    assert await response.json() == {"error": {"message": "Internal gateway error", "type": "api_error",
                                               "code": "internal_error", "param": None}}
    assert b"boom" not in await response.read()
    assert (await client.get("/missing")).status == 404  # aiohttp's own HTTP errors pass through
