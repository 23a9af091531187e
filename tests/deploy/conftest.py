"""The overlays are rendered once per session; everything here skips only when kubectl is missing."""

from __future__ import annotations

import pytest

from tests.deploy.support import OVERLAYS, Rendered, kubectl, render_overlay


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    path = kubectl()
    if path is None:
        pytest.skip("kubectl not found: the deploy/ checks render the overlays with `kubectl kustomize`")
    return {overlay: render_overlay(path, overlay) for overlay in OVERLAYS}
