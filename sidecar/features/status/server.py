"""The status page's own listener: `GET /` (HTML), `GET /status.json` (the same data), static files.

It listens on `GATEWAY_STATUS_ADDRESS:GATEWAY_STATUS_PORT` (127.0.0.1:8082 by default), never on the
sidecar's traffic port, and Envoy routes nothing to it. Beyond loopback it requires the admin
token (`GATEWAY_STATUS_TOKEN` or the file `GATEWAY_STATUS_TOKEN_FILE`): the sidecar refuses to
start without one. Scripts send `Authorization: Bearer TOKEN`; browsers get a Basic prompt and
the token is the password (any user name), so the page needs no login form or cookie.
A port that cannot be bound is logged and the gateway serves traffic anyway: the page is a view.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
import orjson
from aiohttp import web

from sidecar.appkeys import BREAKERS, POLICY_STORE
from sidecar.features.quotas.install import QUOTAS
from sidecar.features.status.collect import Status, collect
from sidecar.features.status.install import STATUS_BOARD
from sidecar.policy.watcher import POLICY_WATCHER
from sidecar.settings import Settings

log = logging.getLogger("sidecar.status")
HERE = Path(__file__).resolve().parent
MAIN_APP = web.AppKey("main_app", web.Application)
TOKEN = web.AppKey("status_token", str)
REALM = 'Basic realm="LLM gateway status", charset="UTF-8"'
# Everything the page loads comes from this listener: no CDN, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def listener_problem(settings: Settings) -> str | None:
    """Why the sidecar must not start with these status settings, or None."""
    if settings.status_port and not is_loopback(settings.status_address) and not settings.status_token:
        return (f"GATEWAY_STATUS_ADDRESS={settings.status_address} is beyond loopback, so the status page needs "
                "an admin token: set GATEWAY_STATUS_TOKEN or GATEWAY_STATUS_TOKEN_FILE (a mounted Secret), "
                "or listen on 127.0.0.1 (GATEWAY_STATUS_ADDRESS) and use `kubectl port-forward`")
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app.get(TOKEN)
    if token is not None and not _authorized(request.headers.get("Authorization", ""), token):
        body = {"error": {"message": "The status page needs the admin token: 'Authorization: Bearer TOKEN' "
                          "(or the token as the Basic password)", "type": "authentication_error",
                          "code": "invalid_api_key", "param": None}}
        return web.json_response(body, status=401, headers={"WWW-Authenticate": REALM, **SECURITY_HEADERS},
                                 dumps=lambda v: orjson.dumps(v).decode())
    response = await handler(request)
    response.headers.update(SECURITY_HEADERS)
    return response


def _authorized(header: str, token: str) -> bool:
    scheme, _, value = header.strip().partition(" ")
    offered = value.strip()
    if scheme.lower() == "basic":
        try:
            offered = base64.b64decode(offered, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(offered.encode(), token.encode())


async def _status(request: web.Request) -> Status:
    main = request.app[MAIN_APP]
    return await collect(main[POLICY_STORE], main.get(POLICY_WATCHER), main.get(BREAKERS), main.get(QUOTAS),
                         main[STATUS_BOARD])


async def _page(request: web.Request) -> web.Response:
    status = await _status(request)
    return aiohttp_jinja2.render_template("status.html", request, {"status": status, "data": status.to_json()})


async def _json(request: web.Request) -> web.Response:
    status = await _status(request)
    return web.Response(body=orjson.dumps(status.to_json()), content_type="application/json")


def build_status_app(main: web.Application, token: str | None) -> web.Application:
    """The page's own aiohttp app; it reads `main`'s objects and changes none of them."""
    status_app = web.Application(middlewares=[_guard])
    status_app[MAIN_APP] = main
    if token:
        status_app[TOKEN] = token
    aiohttp_jinja2.setup(status_app, loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=jinja2.select_autoescape(default=True))
    status_app.router.add_get("/", _page)
    status_app.router.add_get("/status.json", _json)
    status_app.router.add_static("/static/", HERE / "static")
    return status_app


def serve(main: web.Application, settings: Settings) -> None:
    """Starts and stops the status listener with `main` (its cleanup context)."""
    if not settings.status_port:
        return

    async def listen(app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(build_status_app(app, settings.status_token), access_log=None, handle_signals=False)
        await runner.setup()
        where = f"{settings.status_address}:{settings.status_port}"
        try:
            await web.TCPSite(runner, settings.status_address, settings.status_port, backlog=64).start()
            log.info("status page listening", extra={"fields": {"address": where,
                                                                 "admin_token": bool(settings.status_token)}})
        except OSError as exc:
            log.error("status page not served: cannot listen", extra={"fields": {
                "address": where, "error": exc.strerror or str(exc)}})
        yield
        await runner.cleanup()

    main.cleanup_ctx.append(listen)
