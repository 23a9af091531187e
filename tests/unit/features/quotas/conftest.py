"""The quota store under test, once per backend: the same behavioural suite runs on both."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sidecar.features.quotas.backend import QuotaBackend
from sidecar.features.quotas.memory_backend import MemoryBackend
from sidecar.features.quotas.redis_backend import RedisBackend
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


# These tests check arithmetic and atomicity, not timeouts (test_durability sets its own): the
# production default (0.25 s) turned a slow connect on a loaded 2-core CI machine into a failure.
LOADED_MACHINE_TIMEOUT = 5.0


@dataclass
class Store:
    """One backend, plus `replica()`: another sidecar's view of the same counters."""

    kind: str
    backend: QuotaBackend
    url: str | None = None
    opened: list[QuotaBackend] = field(default_factory=list)
    # Reservation markers per test: tests reuse reservation ids ("a", "b") on one Redis server.
    marker_prefix: str = field(default_factory=lambda: secrets.token_hex(4))

    async def replica(self) -> QuotaBackend:
        if self.url is None:
            return self.backend  # the embedded store is one process's own
        other = RedisBackend(self.url, timeout=LOADED_MACHINE_TIMEOUT, key_prefix=self.marker_prefix)
        await other.start()
        self.opened.append(other)
        return other

    def key(self, name: str) -> str:
        return f"{{t}}:{name}"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        store = Store("memory", MemoryBackend(tmp_path / "state"))
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = secrets.token_hex(4)
        store = Store("redis", RedisBackend(server.url, timeout=LOADED_MACHINE_TIMEOUT, key_prefix=prefix), server.url,
                      marker_prefix=prefix)
    await store.backend.start()
    yield store
    for backend in [store.backend, *store.opened]:
        await backend.close()


@pytest.fixture
def unique() -> str:
    """Counter keys unique to one test, so tests sharing a Redis server never see each other."""
    return secrets.token_hex(4)
