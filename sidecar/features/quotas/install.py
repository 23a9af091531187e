"""Wires quotas into the app: the backend chosen by `limits.store`, the stage and the finisher."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from sidecar.appkeys import METRICS
from sidecar.core.limits import StoreConfig
from sidecar.extensions import Extensions
from sidecar.features.quotas.backend import QuotaBackend
from sidecar.features.quotas.memory_backend import MemoryBackend
from sidecar.features.quotas.service import QuotaService
from sidecar.features.quotas.settlement import cap_completion

STATE_DIR_ENV = "GATEWAY_STATE_DIR"
DEFAULT_STATE_DIR = ".gateway-state"
QUOTAS = web.AppKey("quotas", QuotaService)


def build_backend(store: StoreConfig) -> QuotaBackend:
    if store.backend == "redis":
        from sidecar.features.quotas.redis_backend import RedisBackend

        assert store.redis_url is not None  # the schema requires it
        return RedisBackend(store.redis_url, store.timeout, store.key_prefix)
    state_dir = store.state_dir or Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
    return MemoryBackend(state_dir, store.flush_interval)


def install(app: web.Application, extensions: Extensions, store: StoreConfig,
            decision_ttl: float = 60.0, arrival_lease: float = 10.0) -> QuotaService:
    """The store is chosen once, at start: changing `limits.store` takes a restart.

    The stage runs as "quotas" in the callout's STAGE_ORDER; a later stage that denies undoes the
    reservation. `decision_ttl` (seconds) is how long a decision may be forwarded (reservation
    markers outlive it), `arrival_lease` how long an unclaimed slot is held.
    """
    service = QuotaService(build_backend(store), store.key_prefix, metrics=app.get(METRICS),
                           decision_ttl=decision_ttl, arrival_lease=arrival_lease)
    app[QUOTAS] = service

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.backend.start()
        yield
        # cleanup_ctx runs after in-flight requests ended, so their settlements are persisted.
        await service.backend.close()

    app.cleanup_ctx.append(lifecycle)
    extensions.stages["quotas"] = service.check
    extensions.arrivals.append(service.claim)
    extensions.refusals.append(service.refused)
    extensions.finishers.append(service.finish)
    extensions.request_editors.append(lambda body, decision, policy: cap_completion(body, decision))
    return service
