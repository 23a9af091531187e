"""Sending a request to the decision's deployments in order, until one answers: fallbacks.

`Attempts` is the async context manager the relay reads the provider's answer from. Entering it
tries deployments one after another: a connect error, a timeout before the answer started, a
5xx or 429 (any error the provider module marks retryable) or an open breaker moves on to the
next deployment. All of that happens before the relay sends the client anything, so a fallback
can never follow the first byte. Every attempt takes a breaker permit and reports its outcome,
the one the relay reads from on leaving the context (where mid-stream faults are known).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.appkeys import BREAKERS, HTTP_CLIENT
from sidecar.core.errors import GatewayError, ProviderError
from sidecar.core.failure_table import Phase, breaker_outcome, status_outcome
from sidecar.core.kinds import Outcome
from sidecar.core.routes import Deployment
from sidecar.forward.breaker import Breaker, Permit, breaker_open
from sidecar.forward.exchange import Exchange
from sidecar.forward.failures import as_gateway_error, exit_outcome
from sidecar.providers.base import UpstreamRequest, build_upstream
from sidecar.providers.registry import provider_for
from sidecar.responses import JSON_CONTENT_TYPE

log = logging.getLogger("sidecar.attempts")
_STREAM_BODY_OVER = 1024 * 1024


class Attempts:
    """Tries the decision's deployments in order until one answers (fallback before the first byte; see the module
    doc).
    """

    def __init__(self, request: web.Request, exchange: Exchange, body: dict[str, Any],
                 candidates: Sequence[Deployment]) -> None:
        self._session = request.app[HTTP_CLIENT]
        self._board = request.app[BREAKERS]
        self._exchange = exchange
        self._body = body
        self._candidates = candidates
        self.watch = exchange.watch
        self._committed: tuple[aiohttp.ClientResponse, Permit | None] | None = None
        self._open_permits: list[Permit] = []  # taken but not yet booked
        self.tried: list[str] = []

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            return await self._first_answer()
        except BaseException:
            # Whatever ended the loop (a final error, or the client leaving mid-attempt), no permit
            # may stay out: a leaked probe slot would keep a half-open breaker shut for good.
            for permit in list(self._open_permits):
                self._book(permit, Outcome.NEUTRAL)
            raise

    async def _first_answer(self) -> aiohttp.ClientResponse:
        last: GatewayError | None = None
        pending: aiohttp.ClientResponse | None = None  # a retryable error answer, kept for the client
        skipped: list[Breaker] = []
        for deployment in self._candidates:
            breaker = self._board.get(deployment.name, deployment.breaker)
            permit = breaker.acquire()
            if permit is None:
                skipped.append(breaker)
                continue
            self._open_permits.append(permit)
            if pending is not None:
                pending.release()  # superseded by this attempt
                pending = None
            try:
                upstream = self._prepare(deployment)
            except GatewayError as error:
                self._book(permit, Outcome.NEUTRAL)  # our configuration, not the provider's health
                last = error
                if _retryable(error):
                    continue
                raise
            try:
                response = await self._send(deployment, upstream)
            except GatewayError as error:
                self._book(permit, breaker_outcome(error))
                last = error
                if _retryable(error):
                    self._log_failed(deployment, error)
                    continue
                raise
            if response.status != 200:
                # The body was read in _send: this read returns it from memory.
                answer = self._exchange.answer_error(response.status, await response.read(), response.headers)
                self._book(permit, status_outcome(response.status))
                if answer.retryable:
                    pending, last = response, answer
                    self._log_failed(deployment, answer)
                    continue
                # Not retryable (the client's own 4xx): the relay turns it into the client's error.
                self._committed = (response, None)
                return response
            self._open_permits.remove(permit)  # booked on leaving, when the answer's fate is known
            if permit.probe and self._exchange.decision.stream:
                # A stream may run for minutes: its 200 is the probe's success, so the breaker
                # closes now; the rest of the stream is booked like any request's.
                permit.record(Outcome.SUCCESS)
                permit = breaker.acquire()
            self._committed = (response, permit)
            self._body = {}  # no attempt follows an answer: an open stream need not hold the request
            return response
        if pending is not None:
            self._committed = (pending, None)
            return pending
        raise last if last is not None else breaker_open(self._exchange.decision.model_key, skipped)

    def _book(self, permit: Permit, outcome: Outcome) -> None:
        self._open_permits.remove(permit)
        permit.record(outcome)

    def _prepare(self, deployment: Deployment) -> UpstreamRequest:
        """The exchange now names this deployment and its provider (the response header says so)."""
        self.tried.append(deployment.name)
        exchange = self._exchange
        if deployment is not exchange.deployment:  # a fallback (the first is the exchange's already)
            exchange.deployment, exchange.provider = deployment, provider_for(deployment)
        provider = exchange.provider
        # A shallow copy: providers set top-level keys (`model`) that differ per deployment.
        return build_upstream(provider, exchange.decision.endpoint, dict(self._body),
                              request_id=exchange.decision.request_id)

    async def _send(self, deployment: Deployment, upstream: UpstreamRequest) -> aiohttp.ClientResponse:
        watch = self.watch
        watch.begin(deployment.timeouts)
        # `connect` covers TCP and TLS (the pool is unbounded, so there is no waiting for a slot).
        timeout = aiohttp.ClientTimeout(total=None, connect=deployment.timeouts.connect)
        body = upstream.body
        response: aiohttp.ClientResponse | None = None
        try:
            response = await watch.run(self._session.post(
                # Large bodies go as a stream, so the event loop is not blocked writing them.
                upstream.url, data=io.BytesIO(body) if len(body) > _STREAM_BODY_OVER else body,
                headers=upstream.headers, timeout=timeout,
            ), watch.first_byte_deadline())
            if response.status != 200 or not self._exchange.decision.stream \
                    or response.content_type == JSON_CONTENT_TYPE:
                # Whole answers and error bodies (a stream request answered with JSON is one) are
                # read here, so a stall is still a fallback.
                await watch.run(response.read(), watch.idle_deadline())
        except BaseException as exc:
            if response is not None:
                response.close()
            error = as_gateway_error(exc, Phase.ATTEMPT)
            if error is None or error is exc:
                raise
            raise error from exc
        return response

    def _log_failed(self, deployment: Deployment, error: GatewayError) -> None:
        log.info("attempt failed", extra={"fields": {
            "request_id": self._exchange.decision.request_id, "deployment": deployment.name,
            "status": error.status, "error": error.code or error.error_type}})

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        *rest: object) -> None:
        assert self._committed is not None
        response, permit = self._committed
        self.watch.close()
        if permit is not None:  # None: an error answer, booked when it arrived
            fault = self._exchange.fault
            if exc is not None:
                permit.record(exit_outcome(exc))
            else:
                permit.record(breaker_outcome(fault) if fault is not None else Outcome.SUCCESS)
        if exc is None:
            response.release()  # back to the pool
        else:
            # Client gone or stream broken: drop the connection so the provider stops generating.
            response.close()


def _retryable(error: GatewayError) -> bool:
    return isinstance(error, ProviderError) and error.retryable
