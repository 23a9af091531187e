"""Plugs the guardrails into the request path (see sidecar/extensions.py).

The input scan is the callout's costly stage: it runs last in STAGE_ORDER ("guardrails_input"),
after token, model and quota admission. A body larger than `OFFLOAD_BODY_BYTES` is scanned in
a worker thread (`SCAN_THREADS`), never on the event loop; further large scans wait their
turn, so small requests keep being decided while large prompts are scanned. The bound on the
loop: while the worker scans, the loop gets the interpreter back within the switch interval
(`SWITCH_INTERVAL_SECONDS`, 1 ms, set for the process) between the scan's steps; one C-level
pass over one text (a regular expression, a translate) holds it for its whole length: a few
ms per MB of text. Bodies below `OFFLOAD_BODY_BYTES` (64 KiB) scan on the loop: well under a
millisecond each. Webhook guardrails share the slot (webhook/input_stage.py): their detectors
are called on the loop and answer while the built-in scan runs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from sidecar.callout.pipeline import Check, Stage, per_kind
from sidecar.core.endpoints import EndpointKind
from sidecar.extensions import Extensions
from sidecar.features.guardrails.decision_keys import JSON_ANSWER, REQUESTED_GUARDRAILS
from sidecar.features.guardrails.embeddings_input import apply_input_masks, check_embeddings_input
from sidecar.features.guardrails.input_check import REQUEST_FIELD, check_input
from sidecar.features.guardrails.output_check import output_guards_for, wants_json_answer
from sidecar.features.guardrails.request_masking import apply_masks
from sidecar.features.guardrails.webhook.install import install as install_webhooks

OFFLOAD_BODY_BYTES = 64 * 1024
SCAN_THREADS = 1
SWITCH_INTERVAL_SECONDS = 0.001


async def _remember_requested(check: Check) -> None:
    # Opt-in guardrails named by the request also apply to its output on the forwarding path.
    assert check.request is not None
    requested = check.request.body.get(REQUEST_FIELD)
    if requested:
        check.put(REQUESTED_GUARDRAILS, frozenset(requested))
    # Output masks keep a JSON answer valid JSON; the forwarding path learns it from the decision.
    if wants_json_answer(check.request.body):
        check.put(JSON_ANSWER, True)


class ScanOffload:
    """Runs a callout stage in a worker thread when the body is large (see the module docstring)."""

    def __init__(self, stage: Stage, threads: int = SCAN_THREADS, min_bytes: int = OFFLOAD_BODY_BYTES) -> None:
        self._stage = stage
        self._threads = threads
        self._min_bytes = min_bytes
        self._pool: ThreadPoolExecutor | None = None

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="guardrail-scan")
        # The event loop waits for the interpreter at most this long while a scan runs (Python's
        # default, 5 ms, let 4 MB prompts add ~120 ms to a small request's p50 on the bench).
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        yield
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    async def stage(self, check: Check) -> None:
        if self._pool is None or len(check.raw_body) < self._min_bytes:
            await self._stage(check)
            return
        await asyncio.get_running_loop().run_in_executor(self._pool, self._run, check)

    def _run(self, check: Check) -> None:
        async def run() -> None:
            await self._stage(check)

        # The stage awaits no I/O: a private event loop in the worker runs it to completion.
        asyncio.run(run())


def install(app: web.Application, extensions: Extensions) -> None:
    """Registers the input scan ("guardrails_input", the webhook guardrails' calls in flight while it
    runs), the requested-guardrails stage, the body editors and the output guards."""
    offload = ScanOffload(per_kind({EndpointKind.CHAT: check_input, EndpointKind.EMBEDDINGS: check_embeddings_input}))
    app.cleanup_ctx.append(offload.lifecycle)
    webhooks = install_webhooks(app, extensions)
    # The detectors are called on the event loop; the built-in scan runs meanwhile (off the loop when large).
    extensions.stages["guardrails_input"] = webhooks.alongside(offload.stage)
    extensions.stages["guardrails_requested"] = _remember_requested
    extensions.request_editors.extend([apply_masks, apply_input_masks])
    extensions.output_guards.append(output_guards_for)
