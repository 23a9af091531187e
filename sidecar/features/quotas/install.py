"""Wires quotas into the app: the backend chosen by `limits.store`, the stage and the finisher."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from sidecar.extensions import Extensions
from sidecar.features.quotas.backend import QuotaBackend
from sidecar.features.quotas.limits import StoreConfig
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
        return RedisBackend(store.redis_url, store.timeout)
    state_dir = store.state_dir or Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
    return MemoryBackend(state_dir, store.flush_interval)


def install(app: web.Application, extensions: Extensions, store: StoreConfig) -> QuotaService:
    """The store is chosen once, at start: changing `limits.store` takes a restart.

    Install quotas as the last callout stage: a stage after it that denies would leave the
    reservation unsettled (slots are freed by their lease, token usage stays counted).
    """
    service = QuotaService(build_backend(store), store.key_prefix)
    app[QUOTAS] = service

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.backend.start()
        yield
        # cleanup_ctx runs after in-flight requests ended, so their settlements are persisted.
        await service.backend.close()

    app.cleanup_ctx.append(lifecycle)
    extensions.stages.append(service.check)
    extensions.finishers.append(service.finish)
    extensions.request_editors.append(lambda body, decision, policy: cap_completion(body, decision.extra))
    return service
