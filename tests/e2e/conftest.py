"""End-to-end fixtures: the real Envoy, the real sidecar and the demo provider, on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sidecar.devtools.launcher import Stack
from tests.detector_server import DetectorServer
from tests.e2e.faults import FaultyProvider
from tests.e2e.scripted_support import ScriptedProvider
from tests.e2e.stacks import REPO, stack_settings, start_stack, write_test_policies


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("gateway")
    stack = start_stack(workdir, stack_settings(write_test_policies(workdir / "policies")))
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack exactly as `make run` starts it: the repository's own demo policies."""
    workdir = tmp_path_factory.mktemp("demo")
    stack = start_stack(workdir, stack_settings(REPO / "policies"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyProvider]:
    """A provider that fails on demand (sidecar.devtools.faulty_provider), one per test module."""
    provider = FaultyProvider(tmp_path_factory.mktemp("faulty"))
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def detector() -> Iterator[DetectorServer]:
    """A webhook detector (tests/detector_server.py) on a free port, one per test module."""
    server = DetectorServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scripted_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedProvider]:
    """A provider that answers what a request's `script:` message asks for, one per test module."""
    provider = ScriptedProvider(tmp_path_factory.mktemp("scripted"))
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def status_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with guardrails and a daily quota for `demo`: the status page's tests."""
    from tests.e2e.status_support import write_status_policies

    workdir = tmp_path_factory.mktemp("status")
    stack = start_stack(workdir, stack_settings(write_status_policies(workdir / "policies")))
    yield stack
    stack.stop()
