"""The overlays are rendered once per session; without kubectl everything here skips loudly (fails in CI)."""

from __future__ import annotations

import pytest

from tests.deploy.support import OVERLAYS, Rendered, render_overlay
from tests.tools import require


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    path = require("kubectl", "the deploy/ checks render the overlays with `kubectl kustomize` "
                              "(.ci/install-tools puts one in .venv/bin)")
    return {overlay: render_overlay(path, overlay) for overlay in OVERLAYS}
