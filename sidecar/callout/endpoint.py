"""The ext_authz callout endpoint: Envoy sends every client request here, body included.

One handler per endpoint kind (`callout_handler`): the kind chooses the body parser, the model
category check and the stages; GET /models/{model} passes the key from the path.

200 means allowed: the signed decision and the final request id go back as headers that Envoy
copies onto the routed request. Any 4xx is a denial Envoy relays to the client byte for byte.
Envoy's decompressors have already decoded a gzip or br body; a body still encoded (another
coding, or a second one) is refused from its headers before it is read (callout/encoding.py),
since the callout would decide on bytes that are not the JSON the provider reads.

Each decision, allowed or denied, goes to the `decision_observers` features installed in
`extensions` (observability's metrics and decision log line, the status page's history): plain
functions called once each, with the seconds the decision took.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from sidecar.appkeys import DECISION_SIGNER, EXTENSIONS, PIPELINE, POLICY_STORE
from sidecar.callout.encoding import SENT_ENCODING_HEADER, decoded_coding, encoding_refusal, undecodable
from sidecar.callout.handoff import DECISION_HEADER, encode
from sidecar.callout.pipeline import Check, Denied, resolve_request_id
from sidecar.callout.recent import RecentDecisions
from sidecar.core.endpoints import EndpointKind
from sidecar.responses import error_response
from sidecar.settings import SENTINEL_503, Settings

AUTHZ_PREFIX = "/authz"


def callout_handler(app: web.Application, kind: EndpointKind, settings: Settings,
                    recent: RecentDecisions) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The callout for one endpoint kind of `app` (routes: `AUTHZ_PREFIX` + the client's path): a
    bound method, so aiohttp calls it directly (no wrapper frame per request)."""
    return CalloutEndpoint(app, kind, settings, recent).handle


def path_model(request: web.Request) -> str | None:
    """The key of GET /models/{model}, percent-decoded (the SDKs send `/` in a key as %2F)."""
    return request.match_info.get("model")


class CalloutEndpoint:
    """One endpoint kind's callout, with what every request reuses: the decision's TTL, its
    signer (the key's HMAC state, see DecisionSigner), where signed decisions are remembered and
    who observes them (`app[EXTENSIONS]`, set before the routes are added)."""

    def __init__(self, app: web.Application, kind: EndpointKind, settings: Settings,
                 recent: RecentDecisions) -> None:
        # The app the route is added to, which is `request.app` (two property calls per request).
        # Its PIPELINE and POLICY_STORE are read per request: tests and reloads replace them.
        self.app = app
        self.kind = kind
        self.ttl_seconds = settings.decision_ttl_seconds
        self.signer = app[DECISION_SIGNER]  # one HMAC state for every route and the forwarding path
        self.recent = recent
        # The list itself, not the app key: one attribute read per request, and a feature
        # installed later still appends to this same list.
        self.observers = app[EXTENSIONS].decision_observers

    async def handle(self, request: web.Request) -> web.Response:
        """200 with the signed decision header, or the denial's JSON error (see the module doc)."""
        app = self.app
        started = time.monotonic()
        kind = self.kind
        headers = request.headers
        if "Content-Encoding" in headers:
            # Decided from the header, before a byte of the body is read (callout/encoding.py).
            refusal = encoding_refusal(headers)
            if refusal is not None:
                return self._denial(Denied(refusal, Check(app[POLICY_STORE].current, b"",
                                                          headers.get("Authorization"),
                                                          resolve_request_id(headers.get("X-Request-Id")))),
                                    started)
        raw_body = await request.read()
        try:
            check = await app[PIPELINE].decide(
                app[POLICY_STORE].current,
                raw_body,
                headers.get("Authorization"),
                headers.get("X-Request-Id"),
                kind=kind,
                # Only GET /models/{model} has a key in its path.
                path_model=path_model(request) if kind is EndpointKind.MODELS else None,
            )
        except Denied as denied:
            if SENT_ENCODING_HEADER in headers:
                coding = decoded_coding(headers)
                if coding is not None:
                    denied = Denied(undecodable(denied.error, raw_body, coding), denied.check)
            return self._denial(denied, started)
        seconds = time.monotonic() - started
        for observe in self.observers:
            observe(check, None, seconds)
        now = time.time()
        decision = check.decision(self.ttl_seconds, now)
        header = encode(decision, self.signer)
        self.recent.remember(header, decision, now)  # the forward, most often in this process, skips decoding
        answer = {DECISION_HEADER: header, "X-Request-Id": check.request_id}
        if check.client_headers:
            answer.update(check.client_headers)
        return web.Response(status=200, headers=answer)

    def _denial(self, denied: Denied, started: float) -> web.Response:
        error = denied.error
        seconds = time.monotonic() - started
        for observe in self.observers:
            observe(denied.check, error, seconds)
        # Envoy counts a 5xx from the callout as the callout failing; the sentinel status is
        # turned back into 503 by Envoy's local_reply_config, body and Retry-After intact.
        status = SENTINEL_503 if error.status == 503 else error.status
        response = error_response(error, denied.check.request_id, status=status)
        response.headers.update(denied.check.client_headers)
        return response

