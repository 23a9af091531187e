"""Kinds that cross modules, as StrEnums: their values are what policies, logs and metrics spell."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """One provider attempt's outcome, as the breaker books it.

    The first four may count as failures (a deployment's `breaker.failure_on`); `success` closes a
    half-open breaker; `neutral` (the client's own 4xx, a client that went away, a gateway
    shutdown) says nothing about the provider's health.
    """

    CONNECT = "connect"
    TIMEOUT = "timeout"
    SERVER_ERROR = "5xx"
    RATE_LIMITED = "429"
    SUCCESS = "success"
    NEUTRAL = "neutral"


FAILURE_KINDS: tuple[Outcome, ...] = (Outcome.CONNECT, Outcome.TIMEOUT, Outcome.SERVER_ERROR, Outcome.RATE_LIMITED)
