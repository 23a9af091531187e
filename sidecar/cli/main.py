"""`python -m sidecar …`: serve, run the whole stack, check policies, mint tokens."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop
from aiohttp import web

from sidecar.callout.handoff import MAX_DECISION_HEADER_BYTES
from sidecar.cli.explain_cmd import add_parser as add_explain_parser
from sidecar.cli.unix_socket import SocketInUse, bind_unix_socket, inherited_socket, remove_socket_file
from sidecar.cli.workers import (
    KeyHandoverError,
    die_with_parent,
    is_child,
    read_handed_key,
    serve_workers,
    unsupported,
    worker_count,
)
from sidecar.core.tokens import hash_token, mint_token
from sidecar.envoy.config import render
from sidecar.features.observability.logs import setup_logging
from sidecar.features.quotas.install import STATE_DIR_ENV
from sidecar.policy.loader import load_policy
from sidecar.policy.reader import PolicyError
from sidecar.policy.snapshot import Policy
from sidecar.policy.summary import report_errors, summarize
from sidecar.settings import DEFAULT_DEMO_PROVIDER_PORT, Settings

if TYPE_CHECKING:
    from sidecar.devtools.launcher import Stack

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


def cmd_serve(args: argparse.Namespace) -> int:
    """`serve`: runs the sidecar (settings from GATEWAY_* variables; GATEWAY_SIDECAR_WORKERS processes)."""
    from sidecar.app import init_app
    from sidecar.appkeys import POLICY_STORE
    from sidecar.features.drain.stage import handle_sigterm
    from sidecar.features.status.server import listener_problem
    from sidecar.features.status.server import serve as serve_status

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 1
    refusal = listener_problem(settings)
    if refusal:
        print(f"sidecar: refusing to start: {refusal}", file=sys.stderr)
        return 1
    setup_logging()
    if is_child():
        try:
            settings = dataclasses.replace(settings, decision_key=read_handed_key(sys.stdin))
        except KeyHandoverError as exc:
            print(exc, file=sys.stderr)
            return 1
    try:
        app = init_app(settings)
    except PolicyError as exc:
        report_errors(settings.policies_dir, exc)
        return 1
    problem = unsupported(worker_count(), app[POLICY_STORE].current)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    if not is_child():  # workers share the parent's port on purpose (SO_REUSEPORT)
        from sidecar.devtools.launcher import PortInUse, check_port_free

        try:
            check_port_free("127.0.0.1", settings.sidecar_port, "GATEWAY_SIDECAR_PORT", "the sidecar")
        except PortInUse as exc:
            print(f"sidecar not started: {exc}", file=sys.stderr)
            return 1
    handle_sigterm(app)  # drain in-flight streams before aiohttp's own shutdown
    if is_child():
        die_with_parent()
    else:  # one status listener per pod/process group: extra workers would fight over its port
        serve_status(app, settings)

    try:
        unix = _sidecar_socket(settings)
    except (SocketInUse, ValueError, OSError) as exc:
        print(f"sidecar not started: {exc}", file=sys.stderr)
        return 1

    def serve(reuse_port: bool) -> None:
        _tune_gc()
        # handler_cancellation: a client that goes away mid-stream cancels the handler, which closes
        # the provider request instead of letting it generate into the void.
        # uvloop: the event loop and socket work in C; `make bench` measured 7-17% less sidecar CPU
        # per request (more for streams). backlog: a burst of new streams makes Envoy open hundreds
        # of connections at once; with aiohttp's default of 128 the kernel drops the excess SYNs
        # and Envoy's callout fails (503).
        web.run_app(app, host="127.0.0.1", port=settings.sidecar_port, print=None, reuse_port=reuse_port or None,
                    handler_cancellation=True, access_log=None, shutdown_timeout=settings.drain_seconds,
                    backlog=LISTEN_BACKLOG, loop=uvloop.new_event_loop(),
                    # aiohttp's default (8190 bytes a header) would answer a large decision with a plain-text 400.
                    max_field_size=MAX_DECISION_HEADER_BYTES + 1024, sock=unix)

    try:
        serve_workers(worker_count(), serve, settings.drain_seconds + 5.0, settings.decision_key,
                      unix.fileno() if unix is not None else None)
    finally:
        if unix is not None and not is_child():
            remove_socket_file(settings.sidecar_socket)
    return 0


# The cyclic collector's first-generation threshold (CPython's default: 700 allocations). A request
# allocates thousands of objects, nearly all freed by reference counting, so the default ran
# several collections per request; callgrind counted 1.2% fewer instructions per request with
# this and the freeze below (`make bench` workload). Garbage in cycles waits for at most this
# many allocations: well under a megabyte.
GC_FIRST_GENERATION_THRESHOLD = 10_000


def _tune_gc() -> None:
    """Moves what startup built (the policy snapshot, compiled patterns, modules) out of the
    collector's sight (`gc.freeze`: it is never garbage) and collects less often."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, second, third)


def _sidecar_socket(settings: Settings) -> socket.socket | None:
    """Envoy's Unix socket (GATEWAY_SIDECAR_SOCKET): bound here, or inherited by a worker child."""
    if not settings.sidecar_socket:
        return None
    if is_child():
        return inherited_socket()
    return bind_unix_socket(settings.sidecar_socket, LISTEN_BACKLOG)


def cmd_demo_provider(args: argparse.Namespace) -> int:
    """`demo-provider`: runs the local OpenAI-compatible demo provider on 127.0.0.1."""
    from sidecar.devtools.demo_provider import init_demo_provider

    web.run_app(init_demo_provider(args.stream_delay), host="127.0.0.1", port=args.port, print=None,
                access_log=None, backlog=LISTEN_BACKLOG)
    return 0


def cmd_envoy_config(args: argparse.Namespace) -> int:
    """`envoy-config`: prints (or writes to --output) the Envoy config for the current settings."""
    text = render(Settings.from_env())
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 with one summary line, or 1 with every error (`FILE:LINE: key.path: message`)."""
    settings = Settings.from_env()
    folder = Path(args.dir) if args.dir else settings.policies_dir
    try:
        policy = load_policy(folder)
    except PolicyError as exc:
        report_errors(folder, exc)
        return 1
    envoy = "envoy config not validated (--skip-envoy)" if args.skip_envoy else _validate_envoy(settings)
    print(f"{summarize(policy)}; {envoy}")
    return 1 if envoy == "envoy config INVALID" else 0


def _validate_envoy(settings: Settings) -> str:
    from sidecar.devtools.launcher import envoy_binary

    try:
        binary = envoy_binary()
    except RuntimeError:
        return "envoy config not validated (no envoy binary)"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        config.write(render(settings))
        config.flush()
        result = subprocess.run([binary, "--mode", "validate", "-c", config.name], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-4000:] + result.stderr[-4000:], file=sys.stderr)
        return "envoy config INVALID"
    return "envoy config valid"


def cmd_token_new(args: argparse.Namespace) -> int:
    """`token new`: prints a new client token once and the `tokens:` entry (its SHA-256) to paste."""
    token = mint_token()
    print(f"token (give it to the client; it is not stored anywhere): {token}\n")
    print("paste under `tokens:` in a policy file:")
    print(f"  {args.name}:\n    sha256: {hash_token(token)}")
    if args.team:
        print(f"    team: {args.team}")
    if args.models:
        print(f"    models: [{', '.join(args.models.split(','))}]")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: demo provider, sidecar and Envoy together in the foreground (`make run`); 1 on an invalid policy."""
    from sidecar.devtools.launcher import PortInUse, Stack

    settings = Settings.from_env()
    try:
        policy = load_policy(settings.policies_dir)
    except PolicyError as exc:
        report_errors(settings.policies_dir, exc)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="gateway-run-"))
    if "GATEWAY_SIDECAR_SOCKET" not in os.environ:  # Envoy reaches the sidecar over a Unix socket
        settings = dataclasses.replace(settings, sidecar_socket=str(workdir / "sidecar.sock"))
    stack = Stack(settings, workdir)
    # Ctrl-C (and a supervisor's SIGTERM) stop everything cleanly, even where a shell started
    # this process with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        stack.start()
        _print_banner(stack, settings, policy, args.demo_token)
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(0.5)
        print("a gateway process exited; stopping", file=sys.stderr)
        return 1
    except PortInUse as exc:  # checked before anything starts: nothing shares a taken port
        print(f"gateway not started: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_banner(stack: Stack, settings: Settings, policy: Policy, demo_token: str) -> None:
    print(f"\nLLM gateway listening on {stack.base_url}/api/client/v1/chat/completions")
    print(f"  base_url: {stack.base_url}/api/client/v1 (POST /chat/completions, POST /embeddings, GET /models)")
    print(f"  policies: {settings.policies_dir} (version {policy.version})")
    print(f"  models:   {', '.join(sorted(policy.models.routes))}")
    if hash_token(demo_token) in policy.tokens.by_hash:
        print(f"  demo token: {demo_token}")
    print(f"  demo provider: {stack.demo_provider_url}/v1   sidecar: {stack.sidecar_url}")
    if settings.status_port:
        print(f"  status page: {stack.status_url}/   metrics: {stack.metrics_url}/metrics, /stats/prometheus")
    # `explain` runs in a process of its own: it reaches this gateway's provider and quota counters
    # only through the same settings (its breakers are its own; the status page shows these).
    same = [f"GATEWAY_DEMO_PROVIDER_PORT={settings.demo_provider_port}"] \
        if settings.demo_provider_port != Settings().demo_provider_port else []
    if os.environ.get(STATE_DIR_ENV):
        same.append(f"{STATE_DIR_ENV}={os.environ[STATE_DIR_ENV]}")
    if same:
        print(f"  explain against this gateway: {' '.join(same)} python -m sidecar explain …")
    print("Ctrl-C stops everything.\n", flush=True)


DEMO_TOKEN = "cgt_demo_Jm3kQ8vYx2LrT9pWn4HsZ6bC1dF7gK0a"


def main(argv: list[str] | None = None) -> int:
    """The `python -m sidecar` entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sidecar")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the sidecar (settings from GATEWAY_* variables)").set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo-provider", help="run the local OpenAI-compatible demo provider")
    demo.add_argument("--port", type=int, default=Settings().demo_provider_port)
    demo.add_argument("--stream-delay", type=float, default=0.0, help="seconds between streamed words")
    demo.set_defaults(func=cmd_demo_provider)
    envoy = sub.add_parser("envoy-config", help="print the Envoy config for the current settings")
    envoy.add_argument("-o", "--output")
    envoy.set_defaults(func=cmd_envoy_config)
    check = sub.add_parser("check", help="validate a policy folder and the Envoy config")
    check.add_argument("dir", nargs="?")
    check.add_argument("--skip-envoy", action="store_true", help="validate the policies only")
    check.set_defaults(func=cmd_check)
    add_explain_parser(sub)
    run = sub.add_parser("run", help="start demo provider, sidecar and Envoy (make run)")
    run.add_argument("--demo-token", default=DEMO_TOKEN, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)
    token = sub.add_parser("token", help="token tools").add_subparsers(dest="token_command", required=True)
    new = token.add_parser("new", help="mint a token and print the policy line for it")
    new.add_argument("--name", required=True)
    new.add_argument("--team")
    new.add_argument("--models", help="comma-separated model keys this token may use")
    new.set_defaults(func=cmd_token_new)
    args = parser.parse_args(argv)
    from sidecar.devtools.launcher import DEMO_PROVIDER_URL_ENV

    # The demo policies name their provider `${GATEWAY_DEMO_PROVIDER_URL:-…}`: every command (explain,
    # check, serve) resolves it from GATEWAY_DEMO_PROVIDER_PORT, the port `make run` starts it on.
    port = os.environ.get("GATEWAY_DEMO_PROVIDER_PORT") or str(DEFAULT_DEMO_PROVIDER_PORT)
    os.environ.setdefault(DEMO_PROVIDER_URL_ENV, f"http://127.0.0.1:{port}/v1")
    result: int = args.func(args)
    return result
