"""Wires the status page's history into the request path: a decision observer and a finisher.

The app factory calls `install`; the listener itself is started by `serve` (sidecar/features/
status/server.py) only in the process that serves traffic, so tests that build an app bind nothing.
"""

from __future__ import annotations

import time

from aiohttp import web

from sidecar.callout.pipeline import Check
from sidecar.core.errors import GatewayError
from sidecar.extensions import Extensions
from sidecar.features.observability.install import logged_model
from sidecar.features.status.rings import StatusBoard
from sidecar.forward.exchange import Exchange

STATUS_BOARD = web.AppKey("status_board", StatusBoard)


def install(app: web.Application, extensions: Extensions) -> StatusBoard:
    board = StatusBoard()
    app[STATUS_BOARD] = board

    def observe(check: Check, error: GatewayError | None, seconds: float) -> None:
        for finding in check.trace.get("guardrails", ()):
            board.findings.add(str(finding["guardrail"]))
        if error is None:
            return  # an allowed request counts when its exchange ends, with its latency
        code = error.code or error.error_type
        board.traffic.denied(code)
        board.denied.add(check.request_id, check.token.name if check.token else None, logged_model(check),
                         error.status, code)

    def finish(exchange: Exchange) -> None:
        now = time.monotonic()
        first = exchange.first_byte - exchange.started if exchange.first_byte else None
        board.traffic.forwarded(now - exchange.started, first)
        for guard in exchange.guards:
            for finding in getattr(guard, "findings", ()):
                board.findings.add(str(finding["guardrail"]))

    extensions.decision_observers.append(observe)
    extensions.exchange_observers.append(finish)
    return board
