"""What each store does beyond counting: the file that survives restarts, and Redis outages."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from sidecar.devtools.launcher import free_port
from sidecar.features.quotas.backend import Adjustment, BackendUnavailable, Charge
from sidecar.features.quotas.memory_backend import STATE_FILE, MemoryBackend
from sidecar.features.quotas.redis_backend import RedisBackend


def day(key: str, amount: int, cap: int = 1000) -> Charge:
    return Charge(key, "window", cap, amount, True, window_end=time.time() + 3600)


async def test_usage_survives_a_restart(tmp_path: Path) -> None:
    first = MemoryBackend(tmp_path, flush_interval=30)
    await first.start()
    await first.reserve("a", [day("d", 300), Charge("m", "bucket", 6000, 200, True)])
    await first.settle("a", [Adjustment("d", "window", -100)])
    await first.close()  # what SIGTERM does, through the app's cleanup
    second = MemoryBackend(tmp_path)
    after = await second.reserve("b", [day("d", 1), Charge("m", "bucket", 6000, 1, True)])
    assert after.used[0] == 201
    assert 190 <= after.used[1] <= 201  # the per-minute bucket kept its level, minus what drained


async def test_a_used_reservation_stays_used_across_a_restart(tmp_path: Path) -> None:
    first = MemoryBackend(tmp_path, flush_interval=30)
    await first.start()
    await first.reserve("a", [day("d", 10)])
    await first.reserve("b", [day("d", 10)])
    assert await first.claim("a", [], lease=60, marker_ttl=60)
    assert await first.settle("b", [], marker_ttl=60)
    await first.close()
    second = MemoryBackend(tmp_path)
    assert not await second.claim("a", [], lease=60, marker_ttl=60)  # a replay after the restart
    assert not await second.claim("b", [], lease=60, marker_ttl=60)
    assert await second.claim("c", [], lease=60, marker_ttl=60)


async def test_changes_are_flushed_periodically(tmp_path: Path) -> None:
    backend = MemoryBackend(tmp_path, flush_interval=0.05)
    await backend.start()
    await backend.reserve("a", [day("d", 42)])
    for _ in range(40):
        if (tmp_path / STATE_FILE).exists():
            break
        await _tick()
    # Without close(): a crash after the flush interval keeps this usage.
    assert json.loads((tmp_path / STATE_FILE).read_text())["windows"]["d"][0] == 42
    await backend.close()


async def test_ended_windows_are_dropped_on_load(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps({"format": 1, "saved_at": 0, "buckets": {},
                                                   "windows": {"old": [5, time.time() - 1], "new": [7, time.time() + 60]}}))
    backend = MemoryBackend(tmp_path)
    assert (await backend.reserve("a", [day("old", 1)])).used[0] == 1
    assert (await backend.reserve("b", [day("new", 1)])).used[0] == 8


async def test_an_unreadable_state_file_starts_empty_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="sidecar.quotas"):
        backend = MemoryBackend(tmp_path)
    assert "quota state unreadable" in caplog.text
    assert (await backend.reserve("a", [day("d", 1)])).admitted


async def test_nothing_is_written_while_nothing_was_counted(tmp_path: Path) -> None:
    backend = MemoryBackend(tmp_path / "state")
    await backend.start()
    await backend.close()
    assert not (tmp_path / "state").exists()


async def test_redis_down_fails_fast_with_backend_unavailable() -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    await backend.start()
    with pytest.raises(BackendUnavailable):
        await backend.reserve("a", [day("d", 1)])
    with pytest.raises(BackendUnavailable):
        await backend.settle("a", [Adjustment("d", "window", 1)])
    await backend.close()


async def _tick() -> None:
    await asyncio.sleep(0.025)


async def test_drained_buckets_and_ended_windows_are_forgotten(tmp_path: Path) -> None:
    clock = [1000.0]
    backend = MemoryBackend(tmp_path, clock=lambda: clock[0])
    await backend.reserve("a", [Charge("b", "bucket", 60, 30, True), Charge("w", "window", 9, 1, True, window_end=1010)])
    await backend.flush()
    assert set(json.loads((tmp_path / STATE_FILE).read_text())["buckets"]) == {"b"}
    clock[0] = 1031.0  # the bucket drained (1 per second) and the window ended
    await backend.reserve("c", [Charge("other", "window", 9, 1, True, window_end=2000)])
    await backend.flush()
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert (state["buckets"], list(state["windows"])) == ({}, ["other"])
