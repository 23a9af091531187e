"""Several sidecar workers on one port: any worker forwards what any other decided."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.cli.workers import WORKERS_ENV
from sidecar.devtools.launcher import Stack
from tests.e2e.stacks import stack_settings, write_test_policies
from tests.e2e.support import chat_body, parse_sse, post_chat


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("workers")
    settings = stack_settings(write_test_policies(workdir / "policies"))
    stack = Stack(settings, workdir, log=(workdir / "stack.log").open("wb"), extra_env={WORKERS_ENV: "2"})
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def test_requests_succeed_across_two_workers(two_workers: Stack) -> None:
    parent = two_workers.processes["sidecar"].pid
    assert len(children_of(parent)) == 1  # worker 0 is the parent itself
    async with aiohttp.ClientSession() as session:
        plain = await asyncio.gather(*(post_chat(session, two_workers.base_url, chat_body(f"n{i}"))
                                       for i in range(16)))
        streamed = await asyncio.gather(*(post_chat(session, two_workers.base_url, chat_body("s", stream=True))
                                          for _ in range(8)))
    assert [status for status, _, _ in plain] == [200] * 16
    assert {json.loads(raw)["choices"][0]["message"]["content"] for _, _, raw in plain} == {
        f"Hello from the demo provider. You said: n{i}" for i in range(16)}
    for status, _, raw in streamed:
        assert status == 200
        assert parse_sse(raw)[-1] == "[DONE]"


def test_stopping_the_sidecar_stops_its_workers(tmp_path: Path) -> None:
    settings = stack_settings(write_test_policies(tmp_path / "policies"))
    stack = Stack(settings, tmp_path, log=(tmp_path / "stack.log").open("wb"), extra_env={WORKERS_ENV: "3"})
    try:
        stack.start()
        workers = children_of(stack.processes["sidecar"].pid)
        assert len(workers) == 2
    finally:
        stack.stop()
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
