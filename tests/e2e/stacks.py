"""Starting a gateway stack for the end-to-end tests: settings on free ports, the test policies, one start."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sidecar.core.tokens import hash_token
from sidecar.devtools.launcher import Stack, free_port
from sidecar.settings import Settings
from tests.e2e.support import DEMO_TOKEN, EXPIRED_TOKEN, RESTRICTED_TOKEN

REPO = Path(__file__).resolve().parents[2]


def stack_settings(policies: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "listen_port": free_port(), "sidecar_port": free_port(), "admin_port": free_port(),
        "demo_provider_port": free_port(), "status_port": free_port(), "metrics_port": free_port(),
        "policies_dir": policies, "max_body_bytes": 8 * 1024 * 1024,
        "drain_seconds": 1,
    }
    values.update(overrides)
    if "sidecar_socket" not in values:
        # Envoy reaches the sidecar over a Unix socket, as in the pod (a short path: sun_path holds
        # 107 bytes); `sidecar_socket=""` keeps loopback TCP.
        values["sidecar_socket"] = str(Path(tempfile.mkdtemp(prefix="cgt-")) / "sidecar.sock")
    return Settings(**values)  # type: ignore[arg-type]


def write_test_policies(folder: Path) -> Path:
    """The demo policies, plus tokens that exercise expiry and model allow-lists."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "policies" / "models.yaml", folder / "models.yaml")
    (folder / "tokens.yaml").write_text(f"""
tokens:
  demo:
    sha256: {hash_token(DEMO_TOKEN)}
    team: demo-team
  expired:
    sha256: {hash_token(EXPIRED_TOKEN)}
    expires: 2020-01-01T00:00:00Z
  restricted:
    sha256: {hash_token(RESTRICTED_TOKEN)}
    models: [text-embedding-3-small]
""", encoding="utf-8")
    return folder


def start_stack(workdir: Path, settings: Settings, *, with_demo_provider: bool = True,
                extra_env: dict[str, str] | None = None) -> Stack:
    """The one way the end-to-end tests start Envoy + sidecar (+ the demo provider), logging to
    `workdir/stack.log`; a stack that fails to start is stopped before the error is raised."""
    # Quota counters of the embedded store live with the stack, not in the working directory.
    stack = Stack(settings, workdir, with_demo_provider=with_demo_provider, log=(workdir / "stack.log").open("wb"),
                  extra_env={"GATEWAY_STATE_DIR": str(workdir / "state"), **(extra_env or {})})
    try:
        stack.start()
    except Exception:
        stack.stop()
        raise
    return stack
