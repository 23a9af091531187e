"""Calling detectors: one pooled HTTP client, bounded per webhook, with a circuit breaker per webhook.

Each call is bounded by the webhook's `timeout` from end to end (waiting for one of its
`max_connections`, connecting, sending, the detector's work and reading the answer). Failures are
booked on the webhook's breaker (`sidecar.forward.breaker`, the deployments' own class): after a
few in a row it opens and calls fail at once with `breaker_open` until the cool-down ends, so a dead
detector costs one timeout per cool-down, not one per request. A dry run (`explain`) calls the
detector but moves no breaker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from sidecar.core.guardrail_webhook import WebhookConfig
from sidecar.core.kinds import Outcome
from sidecar.features.guardrails.webhook.wire import (
    MAX_ANSWER_BYTES,
    CallContext,
    Finding,
    InvalidAnswer,
    Text,
    parse_answer,
    request_body,
)
from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.forward.breaker import Breaker, BreakerBoard, Permit

log = logging.getLogger("sidecar.guardrails")
# All detectors together never hold more connections than this (each webhook has its own bound too).
MAX_TOTAL_CONNECTIONS = 256


class CallError(StrEnum):
    """Why a detector gave no usable answer; the `outcome` label of the calls metric (besides `ok`)."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    HTTP_STATUS = "http_error"
    INVALID_ANSWER = "invalid_answer"
    BREAKER_OPEN = "breaker_open"  # not sent: the webhook's breaker is open


_BREAKER_OUTCOMES = {CallError.TIMEOUT: Outcome.TIMEOUT, CallError.CONNECT: Outcome.CONNECT,
                     CallError.HTTP_STATUS: Outcome.SERVER_ERROR, CallError.INVALID_ANSWER: Outcome.SERVER_ERROR}


@dataclass(frozen=True)
class CallResult:
    """A detector's findings, or why there are none. `seconds` is the call's duration (0 if not sent)."""

    findings: tuple[Finding, ...] = ()
    error: CallError | None = None
    detail: str = ""  # for logs and `explain`: a status or a contract breach, never the texts
    seconds: float = 0.0
    retry_after: float = 1.0  # seconds, for the 503 of `on_error: closed`
    status: int | None = None  # the detector's HTTP status, when it answered with another than 200

    @property
    def refused_for_good(self) -> bool:
        """The detector refused this very request (a 4xx other than 408 and 429: too large, bad
        credentials): sent again, it would be refused again."""
        return self.status is not None and 400 <= self.status < 500 and self.status not in (408, 429)

    @property
    def ok(self) -> bool:
        """The detector answered within the contract (findings may be empty)."""
        return self.error is None

    def retry_after_seconds(self) -> int:
        """Whole seconds for `Retry-After` (at least 1)."""
        return max(1, math.ceil(self.retry_after))


class _Failed(Exception):
    def __init__(self, error: CallError, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.status = status


class WebhookClient:
    """Owned by the app (`session()` runs in its cleanup context); state per webhook survives reloads."""

    def __init__(self, metrics: GatewayMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self._breakers = BreakerBoard(clock)
        self._slots: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> AsyncIterator[None]:
        """An aiohttp cleanup context: one pooled client session for every detector."""
        connector = aiohttp.TCPConnector(limit=MAX_TOTAL_CONNECTIONS, keepalive_timeout=30, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
            self._session = session
            yield
            self._session = None

    def breaker(self, key: str, config: WebhookConfig) -> Breaker:
        """The circuit breaker of the webhook guardrail `key` (one per key, kept across reloads)."""
        return self._breakers.get(f"webhook:{key}", config.breaker)

    async def inspect(self, config: WebhookConfig, context: CallContext, texts: Sequence[Text]) -> CallResult:
        """One call for all `texts`; never raises for the detector's faults (see CallResult.error)."""
        breaker = self.breaker(context.guardrail, config)
        permit: Permit | None = None
        if context.dry_run:
            if not breaker.available():
                return self._not_sent(context, breaker)
        else:
            permit = breaker.acquire()
            if permit is None:
                return self._not_sent(context, breaker)
        started = self._clock()
        outcome = Outcome.NEUTRAL  # a cancelled call says nothing about the detector
        try:
            findings = await self._call(config, context, texts)
            outcome = Outcome.SUCCESS
            return self._booked(context, CallResult(tuple(findings), seconds=self._clock() - started))
        except _Failed as failed:
            outcome = _BREAKER_OUTCOMES[failed.error]
            result = CallResult(error=failed.error, detail=failed.detail, seconds=self._clock() - started,
                                status=failed.status)
            return self._booked(context, result)
        finally:
            if permit is not None:
                permit.record(outcome)

    async def _call(self, config: WebhookConfig, context: CallContext, texts: Sequence[Text]) -> list[Finding]:
        session = self._session
        if session is None:
            raise RuntimeError("WebhookClient.session() is not running")
        body = request_body(context, texts)
        headers = {**config.request_headers(), "Content-Type": "application/json",
                   "X-Request-Id": context.request_id}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout)
        try:
            async with (asyncio.timeout(config.timeout), self._slot(context.guardrail, config),
                        session.post(config.url, data=body, headers=headers, timeout=timeout,
                                     allow_redirects=False) as response):
                if response.status != 200:
                    raise _Failed(CallError.HTTP_STATUS, f"status {response.status}", response.status)
                raw = await _bounded_body(response)
        except TimeoutError:
            raise _Failed(CallError.TIMEOUT, f"no answer within {config.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise _Failed(CallError.CONNECT, type(exc).__name__) from None
        try:
            return parse_answer(raw, texts)
        except InvalidAnswer as exc:
            raise _Failed(CallError.INVALID_ANSWER, str(exc)) from None

    def _slot(self, key: str, config: WebhookConfig) -> asyncio.Semaphore:
        current = self._slots.get(key)
        if current is None or current[0] != config.max_connections:
            # New, or a reload changed the bound: calls holding the old one finish under it.
            current = self._slots[key] = (config.max_connections, asyncio.Semaphore(config.max_connections))
        return current[1]

    def _not_sent(self, context: CallContext, breaker: Breaker) -> CallResult:
        result = CallResult(error=CallError.BREAKER_OPEN, detail="circuit breaker open",
                            retry_after=breaker.retry_after())
        return self._booked(context, result)

    def _booked(self, context: CallContext, result: CallResult) -> CallResult:
        if self._metrics is not None:
            outcome = result.error.value if result.error else "ok"
            self._metrics.webhook_call(context.guardrail, outcome,
                                       None if result.error is CallError.BREAKER_OPEN else result.seconds)
        if result.error is not None and result.error is not CallError.BREAKER_OPEN:  # the breaker logs its moves
            log.warning("webhook guardrail error", extra={"fields": {
                "request_id": context.request_id, "guardrail": context.guardrail,
                "direction": context.direction.value, "error": result.error.value, "detail": result.detail,
                "duration_ms": round(result.seconds * 1000, 1)}})
        return result


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes:
    raw = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > MAX_ANSWER_BYTES:
            raise _Failed(CallError.INVALID_ANSWER, f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
    return bytes(raw)
