"""What `make bench` measures against: the demo provider directly, a plain Envoy pass-through to
it, and the full gateway (Envoy + ext_authz callout + sidecar forwarding), all on 127.0.0.1.

The bench policy folder is the repository's own `policies/` plus the sections under
`bench/policies/` that the loaded sidecar knows (a PII guardrail, a quota). A section this
sidecar does not know yet (its feature is not merged) or that does not validate is left out,
and the bench says so: the figures always state which features were on.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import IO

import yaml

from sidecar.devtools.launcher import Stack, envoy_binary, free_port, wait_http
from sidecar.policy import loader
from sidecar.policy.reader import PolicyError
from sidecar.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CHAT_PATH = "/api/client/v1/chat/completions"
PROVIDER_PATH = "/v1/chat/completions"
_CORE = ("version", "source")


@dataclass
class PolicySetup:
    folder: Path
    included: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file: reason"
    features: dict[str, str] = field(default_factory=dict)  # Policy field -> short description


def _sections_of(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return list(data) if isinstance(data, dict) else []


def build_policies(folder: Path) -> PolicySetup:
    folder.mkdir(parents=True, exist_ok=True)
    setup = PolicySetup(folder)
    defined: set[str] = set()
    for path in loader.policy_files(REPO / "policies"):
        shutil.copy(path, folder / path.name)
        defined.update(_sections_of(path))
    known = set(getattr(loader, "SECTIONS", ()))
    for extra in sorted((BENCH_DIR / "policies").glob("*.yaml")):
        sections = _sections_of(extra)
        unknown = [s for s in sections if s not in known]
        if unknown:
            setup.skipped.append(f"{extra.name}: this sidecar has no `{', '.join(unknown)}` section yet")
            continue
        if any(s in defined for s in sections):
            setup.skipped.append(f"{extra.name}: the demo policies already define {', '.join(sections)}")
            continue
        target = folder / ("bench-" + extra.name)
        shutil.copy(extra, target)
        try:
            loader.load_policy(folder)
        except PolicyError as exc:
            target.unlink()
            setup.skipped.append(f"{extra.name}: does not validate here ({exc.errors[0]})")
            continue
        defined.update(sections)
        setup.included.append(extra.name)
    setup.features = describe_features(folder)
    return setup


def describe_features(folder: Path) -> dict[str, str]:
    """Every policy part beyond tokens and models, with its size: what the gateway runs with."""
    policy = loader.load_policy(folder)
    features = {}
    for f in dataclasses.fields(policy):
        if f.name in _CORE:
            continue
        value = getattr(policy, f.name)
        keys = getattr(value, "keys", None)
        if callable(keys) and not isinstance(value, dict):  # e.g. GuardrailSet.keys(): name them
            names = sorted(str(k) for k in keys())
            features[f.name] = f"{len(names)} ({', '.join(names)})" if names else "none"
            continue
        size = _size(value)
        features[f.name] = "on" if size is None else f"{size} entr{'y' if size == 1 else 'ies'}"
    return features


def _size(value: object) -> int | None:
    for attr in ("by_hash", "routes", "by_name", "items", "rules", "limits"):
        inner = getattr(value, attr, None)
        if isinstance(inner, (dict, list, tuple)):
            return len(inner)
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        return None


@dataclass
class PlainEnvoy:
    """Envoy straight to the demo provider: no ext_authz, no sidecar."""

    provider_port: int
    workdir: Path
    log: IO[bytes]
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        template = Template((BENCH_DIR / "envoy-passthrough.yaml.tmpl").read_text(encoding="utf-8"))
        config = self.workdir / "envoy-passthrough.yaml"
        config.write_text(template.substitute(LISTEN_PORT=self.port, ADMIN_PORT=self.admin_port,
                                              PROVIDER_PORT=self.provider_port), encoding="utf-8")
        cmd = [envoy_binary(), "-c", str(config), "--disable-hot-restart", "-l", "warning"]
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{self.admin_port}/ready", process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    pids: dict[str, int]  # process name -> pid, for CPU and RSS


@dataclass
class Targets:
    stack: Stack
    plain: PlainEnvoy

    @classmethod
    def start(cls, workdir: Path, policies: Path) -> Targets:
        log = (workdir / "processes.log").open("wb")
        settings = Settings(listen_port=free_port(), sidecar_port=free_port(), admin_port=free_port(),
                            demo_provider_port=free_port(), status_port=free_port(), metrics_port=free_port(),
                            policies_dir=policies, drain_seconds=1,
                            # Envoy to sidecar over a Unix socket, as the pod runs (GATEWAY_SIDECAR_SOCKET).
                            sidecar_socket=str(workdir.resolve() / "sidecar.sock"))
        # Quota state (memory store) goes to the bench's own folder, not the checkout.
        stack = Stack(settings, workdir, log=log, extra_env={"GATEWAY_STATE_DIR": str(workdir / "state")})
        plain = PlainEnvoy(settings.demo_provider_port, workdir, log)
        try:
            stack.start()
            plain.start()
        except Exception:
            plain.stop()
            stack.stop()
            raise
        return cls(stack, plain)

    def all(self) -> list[Target]:
        procs = self.stack.processes
        provider = procs["demo-provider"].pid
        assert self.plain.process is not None
        return [
            Target("direct", self.stack.demo_provider_url + PROVIDER_PATH, {"provider": provider}),
            Target("envoy", f"http://127.0.0.1:{self.plain.port}{CHAT_PATH}",
                   {"envoy": self.plain.process.pid, "provider": provider}),
            Target("gateway", self.stack.base_url + CHAT_PATH,
                   {"envoy": procs["envoy"].pid, "sidecar": procs["sidecar"].pid, "provider": provider}),
        ]

    def stop(self) -> None:
        self.plain.stop()
        self.stack.stop()
