"""One forwarded request's state (`Exchange`) and the output-guard hook it carries.

Defined apart from the relay so that features (which read an exchange when it ends) depend on
this small module, not on the relay's I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from sidecar.callout.handoff import Decision, DecisionKey
from sidecar.core.errors import GatewayError, ProviderError
from sidecar.core.routes import Deployment
from sidecar.core.types import JSONDict, Usage
from sidecar.forward.deadlines import Watch
from sidecar.policy.snapshot import Policy
from sidecar.providers.base import Provider, error_from_answer
from sidecar.responses import error_response


class OutputGuard(Protocol):
    """Per-exchange output check. Raising GatewayError blocks: a JSON error for a whole
    completion, an error event plus `data: [DONE]` for a stream."""

    def on_completion(self, completion: JSONDict) -> None:
        """Inspect (and possibly edit in place) a whole `chat.completion`."""
        ...

    def on_chunk(self, chunk: JSONDict) -> list[JSONDict]:
        """A stamped `chat.completion.chunk` in; the chunks to send now out (may hold text back)."""
        ...

    def on_end(self) -> list[JSONDict]:
        """The provider finished: release whatever was held back."""
        ...


class AsyncOutputGuard(Protocol):
    """An output guard that awaits I/O (a webhook guardrail's detector); it runs after the `OutputGuard`s,
    on what they let through. Same contract, awaited, and chunks come in batches."""

    async def check_completion(self, completion: JSONDict) -> None:
        ...

    async def check_chunks(self, chunks: list[JSONDict]) -> list[JSONDict]:
        ...

    async def release(self) -> list[JSONDict]:
        ...


async def guard_chunks(guards: list[AsyncOutputGuard], chunks: list[JSONDict]) -> list[JSONDict]:
    """`chunks` (already through the sync guards) through each async guard in turn."""
    for guard in guards:
        if chunks:
            chunks = await guard.check_chunks(chunks)
    return chunks


async def release_chunks(guards: list[AsyncOutputGuard], pending: list[JSONDict]) -> list[JSONDict]:
    """At the end each async guard sees what the guards before it released, then releases its own."""
    for guard in guards:
        pending = (await guard.check_chunks(pending) if pending else []) + await guard.release()
    return pending


access_log = logging.getLogger("sidecar.access")
DEPLOYMENT_HEADER = "x-gateway-deployment"
# The status an exchange the client left before any answer is logged and counted with (nginx's 499).
CLIENT_CLOSED = 499
# Decision key: the rate-limit header names the callout sends the client on success (the
# gateway's own quotas). Envoy appends them to every answer, so a provider's 429 relays only its
# other back-off headers: the client never gets two values of one header.
# On the wire one string, "limit-requests,reset-tokens,…": every byte of the signed header costs
# ~100-150 instructions across encode, HMAC, decode and aiohttp's header writer, and the full names
# (a list of six `x-ratelimit-…` strings) were a fifth of a 1 KB header. Callout and forward are
# the same sidecar version (one pod, one image), so there is no older form to read.
_RATE_LIMIT_PREFIX = "x-ratelimit-"
_OTHER_NAME = "/"  # marks a name without the prefix ("/" is no token character of a header name)


def _encode_rate_limit_names(names: frozenset[str]) -> str:
    return ",".join(sorted(name.removeprefix(_RATE_LIMIT_PREFIX) if name.startswith(_RATE_LIMIT_PREFIX)
                           else _OTHER_NAME + name for name in names))


def _decode_rate_limit_names(value: str) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(item[1:] if item.startswith(_OTHER_NAME) else _RATE_LIMIT_PREFIX + item
                     for item in value.split(","))


OWN_RATE_LIMIT_HEADERS: DecisionKey[frozenset[str]] = DecisionKey(
    "rate_limit_headers", _encode_rate_limit_names, _decode_rate_limit_names)


@dataclass
class Exchange:
    """One forwarded request: what it was, how it went. Logged once at the end."""

    decision: Decision
    policy: Policy
    deployment: Deployment
    provider: Provider
    started: float
    guards: list[OutputGuard] = field(default_factory=list)
    async_guards: list[AsyncOutputGuard] = field(default_factory=list)  # webhook guardrails, after `guards`
    status: int = 0
    first_byte: float | None = None
    usage: Usage | None = None
    # Characters of completion text relayed, for estimating usage when a stream is cut short.
    completion_chars: int = 0
    error: str | None = None
    fault: GatewayError | None = None  # what ended it early, for breaker bookkeeping
    watch: Watch = field(default_factory=Watch)  # provider timeouts; a shutdown stops it

    def log_access(self) -> None:
        now = time.monotonic()
        access_log.info("request", extra={"fields": {
            "request_id": self.decision.request_id,
            "endpoint": self.decision.endpoint,
            "token": self.decision.token_name,
            "team": self.decision.team,
            "model": self.decision.model_key,
            "deployment": self.deployment.name,
            "stream": self.decision.stream,
            "status": self.status,
            "prompt_tokens": self.usage.prompt_tokens if self.usage else None,
            "completion_tokens": self.usage.completion_tokens if self.usage else None,
            "latency_ms": round((now - self.started) * 1000, 1),
            "ttfb_ms": round((self.first_byte - self.started) * 1000, 1) if self.first_byte else None,
            "error": self.error,
        }})

    def own_rate_limit_headers(self) -> frozenset[str]:
        """Lower-case header names Envoy adds from the callout to this exchange's answer."""
        return self.decision.get(OWN_RATE_LIMIT_HEADERS) or frozenset()

    def answer_error(self, status: int, payload: bytes, headers: Mapping[str, str]) -> ProviderError:
        """The provider's error answer (any endpoint, whole or streamed) as the client gets it: the
        provider module's translation with the provider's back-off headers on a 429/503, but those
        Envoy already adds from the gateway's own quotas (see `error_from_answer`)."""
        return error_from_answer(self.provider, status, payload, headers, self.own_rate_limit_headers())

    def headers(self) -> dict[str, str]:
        return {"X-Request-Id": self.decision.request_id, DEPLOYMENT_HEADER: self.deployment.name}

    def fail(self, error: GatewayError) -> web.Response:
        self.status, self.error, self.fault = error.status, error.code or error.error_type, error
        response = error_response(error, self.decision.request_id)
        response.headers[DEPLOYMENT_HEADER] = self.deployment.name
        return response
