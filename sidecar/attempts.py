"""Sending a request to the decision's deployments in order, until one answers: fallbacks.

`Attempts` is the async context manager the relay reads the provider's answer from. Entering it
tries deployments one after another: a connect error, a timeout before the answer started, a
5xx or 429 (any error the provider module marks retryable) or an open breaker moves on to the
next deployment. All of that happens before the relay sends the client anything, so a fallback
can never follow the first byte. Every attempt takes a breaker permit and reports its outcome,
the one the relay reads from on leaving the context (where mid-stream faults are known).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from sidecar import breaker as outcomes
from sidecar.appkeys import BREAKERS, HTTP_CLIENT
from sidecar.breaker import Breaker, Permit
from sidecar.errors import GatewayError, ProviderError, ShuttingDown, UpstreamTimeout, UpstreamUnreachable
from sidecar.models import Deployment
from sidecar.providers.base import UpstreamRequest
from sidecar.providers.registry import provider_for
from sidecar.relay import Exchange
from sidecar.routing import breaker_open

_STREAM_BODY_OVER = 1024 * 1024


class Attempts:
    def __init__(self, request: web.Request, exchange: Exchange, body: dict[str, Any],
                 candidates: Sequence[Deployment]) -> None:
        self._session = request.app[HTTP_CLIENT]
        self._board = request.app[BREAKERS]
        self._exchange = exchange
        self._body = body
        self._candidates = candidates
        self.watch = exchange.watch
        self._committed: tuple[aiohttp.ClientResponse, Permit] | None = None
        self.tried: list[str] = []

    async def __aenter__(self) -> aiohttp.ClientResponse:
        last: GatewayError | None = None
        pending: tuple[aiohttp.ClientResponse, Permit] | None = None  # a retryable error answer
        skipped: list[Breaker] = []
        for deployment in self._candidates:
            breaker = self._board.get(deployment.name, deployment.breaker)
            permit = breaker.acquire()
            if permit is None:
                skipped.append(breaker)
                continue
            if pending is not None:
                _discard(*pending)
                pending = None
            try:
                upstream = self._prepare(deployment)
            except GatewayError as error:
                permit.record(outcomes.NEUTRAL)  # our configuration, not the provider's health
                last = error
                if _retryable(error):
                    continue
                raise
            try:
                response = await self._send(deployment, upstream)
            except GatewayError as error:
                permit.record(outcome_of(error))
                last = error
                if _retryable(error):
                    continue
                raise
            if response.status == 200:
                self._committed = (response, permit)
                return response
            # The body was read in _send: this read returns it from memory.
            answer = self._exchange.provider.translate_error(response.status, await response.read())
            if not answer.retryable:
                self._committed = (response, permit)  # the relay turns it into the client's error
                return response
            pending, last = (response, permit), answer
        if pending is not None:
            self._committed = pending
            return pending[0]
        raise last if last is not None else breaker_open(self._exchange.decision.model_key, skipped)

    def _prepare(self, deployment: Deployment) -> UpstreamRequest:
        """The exchange now names this deployment and its provider (the response header says so)."""
        self.tried.append(deployment.name)
        exchange = self._exchange
        exchange.deployment = deployment
        exchange.provider = provider = provider_for(deployment)
        # A shallow copy: providers set top-level keys (`model`) that differ per deployment.
        return provider.build_request(dict(self._body), request_id=exchange.decision.request_id)

    async def _send(self, deployment: Deployment, upstream: UpstreamRequest) -> aiohttp.ClientResponse:
        watch = self.watch
        watch.begin(deployment.timeouts)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=deployment.timeouts.connect)
        body = upstream.body
        response: aiohttp.ClientResponse | None = None
        try:
            response = await watch.run(self._session.post(
                # Large bodies go as a stream, so the event loop is not blocked writing them.
                upstream.url, data=io.BytesIO(body) if len(body) > _STREAM_BODY_OVER else body,
                headers=dict(upstream.headers), timeout=timeout,
            ), watch.first_byte_deadline())
            if response.status != 200 or not self._exchange.decision.stream:
                # Whole answers and error bodies are read here, so a stall is still a fallback.
                await watch.run(response.read(), watch.idle_deadline())
        except BaseException as exc:
            if response is not None:
                response.close()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout() from exc
            if isinstance(exc, aiohttp.ClientError):
                raise UpstreamUnreachable(f"Provider unreachable: {type(exc).__name__}") from exc
            raise
        return response

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        *rest: object) -> None:
        assert self._committed is not None
        response, permit = self._committed
        if exc is None:
            fault = self._exchange.fault
            permit.record(outcome_of(fault) if fault is not None else outcomes.SUCCESS)
            response.release()  # back to the pool
            return
        permit.record(_exit_outcome(exc, response.status))
        # Client gone or stream broken: drop the connection so the provider stops generating.
        response.close()


def outcome_of(error: GatewayError) -> str:
    """What an error says about the provider's health, in breaker terms."""
    if isinstance(error, ShuttingDown):
        return outcomes.NEUTRAL
    if isinstance(error, UpstreamTimeout):
        return outcomes.TIMEOUT
    if isinstance(error, UpstreamUnreachable) or error.code == "stream_broken":
        return outcomes.CONNECT
    if isinstance(error, ProviderError):
        return status_outcome(error.status)
    return outcomes.SUCCESS  # the provider answered; a guardrail or the request itself said no


def status_outcome(status: int) -> str:
    if status == 429:
        return outcomes.RATE_LIMITED
    if status >= 500:
        return outcomes.SERVER_ERROR
    return outcomes.SUCCESS  # a 4xx about the request: the provider itself is healthy


def _exit_outcome(exc: BaseException, status: int) -> str:
    if status != 200:
        return status_outcome(status)
    if isinstance(exc, asyncio.CancelledError):
        return outcomes.NEUTRAL
    if isinstance(exc, TimeoutError):
        return outcomes.TIMEOUT
    if isinstance(exc, aiohttp.ClientError):
        return outcomes.CONNECT
    if isinstance(exc, GatewayError):
        return outcome_of(exc)
    return outcomes.SERVER_ERROR


def _retryable(error: GatewayError) -> bool:
    return isinstance(error, ProviderError) and error.retryable


def _discard(response: aiohttp.ClientResponse, permit: Permit) -> None:
    """A retryable error answer superseded by the next attempt: its outcome counts now."""
    permit.record(status_outcome(response.status))
    response.release()
