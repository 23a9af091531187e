"""The quota stores under test (memory, and a real redis-server) shared with the quota tests."""

from tests.unit.features.quotas.conftest import redis_server, store, unique

__all__ = ["redis_server", "store", "unique"]
