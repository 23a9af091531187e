"""Typed keys for what the app factory puts on the aiohttp application."""

from __future__ import annotations

from aiohttp import ClientSession, web

from sidecar.callout.handoff import DecisionSigner
from sidecar.callout.pipeline import DecisionPipeline
from sidecar.callout.recent import RecentDecisions
from sidecar.extensions import Extensions
from sidecar.features.drain.drain import Drain
from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.forward.breaker import BreakerBoard
from sidecar.policy.store import PolicyStore
from sidecar.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POLICY_STORE = web.AppKey("policy_store", PolicyStore)
PIPELINE = web.AppKey("pipeline", DecisionPipeline)
HTTP_CLIENT = web.AppKey("http_client", ClientSession)
EXTENSIONS = web.AppKey("extensions", Extensions)
METRICS = web.AppKey("metrics", GatewayMetrics)
BREAKERS = web.AppKey("breakers", BreakerBoard)
DRAIN = web.AppKey("drain", Drain)
# Decisions this process signed, until their forward takes them (callout/recent.py).
RECENT_DECISIONS = web.AppKey("recent_decisions", RecentDecisions)
# The decision key's HMAC state, built once: the callout signs with it, the forward checks with it.
DECISION_SIGNER = web.AppKey("decision_signer", DecisionSigner)
