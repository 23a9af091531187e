"""Input guardrails on embeddings: the chat input scan, read through a chat-shaped view.

Each input string becomes one user message of a view body, so every input guardrail (PII,
patterns, prompt injection, size) reads it exactly as it reads chat messages, through the input
scan's public entry point (`check_input`). A block is the contract's 400 `guardrail_block` with
findings naming `input_index`; masks come back as edits of the view's messages and travel in the
decision as `[input_index, start, end, placeholder]` for `apply_input_masks` on the forwarding path.

Token-id inputs cannot be read: an applicable input guardrail whose action is `block` or `mask`
refuses them with `guardrail_block` (category `token_ids`), because a promise that a value does
not pass cannot be kept for text the gateway cannot see; a `log` guardrail lets them pass and logs
that they were not scanned.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import Any, NamedTuple

from sidecar.callout.handoff import Decision, DecisionKey
from sidecar.callout.pipeline import Check
from sidecar.core.chat import ChatRequest
from sidecar.core.embeddings import EmbeddingsRequest
from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import GuardrailBlocked, InvalidRequest
from sidecar.features.guardrails.decision_keys import MASKS
from sidecar.features.guardrails.input_check import REQUEST_FIELD, check_input, requested_in_scope
from sidecar.policy.snapshot import Policy

log = logging.getLogger("sidecar.guardrails")


class InputMask(NamedTuple):
    """One masked span of the embeddings `input`: which string, its character offsets, the placeholder."""

    input_index: int
    start: int
    end: int
    placeholder: str


INPUT_MASKS: DecisionKey[tuple[InputMask, ...]] = DecisionKey(
    "input_masks", lambda masks: [list(m) for m in masks],
    lambda value: tuple(InputMask(int(i), int(s), int(e), str(p)) for i, s, e, p in value))
TOKEN_IDS_CATEGORY = "token_ids"
_UNREADABLE = "Token-id input cannot be checked by this guardrail; send the input as text"


async def check_embeddings_input(check: Check) -> None:
    """The callout stage for embeddings; raises GuardrailBlocked (400) or InvalidRequest (400)."""
    request = check.request
    assert isinstance(request, EmbeddingsRequest) and check.token is not None and check.route is not None
    if request.token_ids:
        _check_token_ids(check, request)
        return
    view: dict[str, Any] = {"model": request.model,
                            "messages": [{"role": "user", "content": text} for text in request.texts]}
    if REQUEST_FIELD in request.body:
        view[REQUEST_FIELD] = request.body[REQUEST_FIELD]
    # Built, not parsed: the texts are validated strings already, so serialising the view and parsing
    # it again (the body's second parse on this hop) would only cost time on large inputs.
    view_request = ChatRequest(body=view, model=request.model, stream=False, include_usage=False,
                               max_tokens=None, request_id=None)
    # The same trace and client headers; its own `extra`, whose chat mask edits are translated below.
    shadow = dataclasses.replace(check, kind=EndpointKind.CHAT, request=view_request, extra={})
    try:
        await check_input(shadow)
    except GuardrailBlocked as blocked:
        raise GuardrailBlocked(blocked.guardrail_key, blocked.action,
                               [_input_finding(f) for f in blocked.findings]) from None
    except InvalidRequest as error:
        raise InvalidRequest(error.message, param="input" if error.param == "messages" else error.param,
                             code=error.code) from None
    raw = shadow.extra.get(MASKS.name)
    if raw:
        # The view's texts are the string `content` of messages[i]: message i is input i.
        check.put(INPUT_MASKS, tuple(InputMask(int(e.path[1]), e.start, e.end, e.replacement)
                                     for e in MASKS.decode(raw)))


def _check_token_ids(check: Check, request: EmbeddingsRequest) -> None:
    assert check.token is not None and check.route is not None
    guardrails = check.policy.guardrails
    requested = requested_in_scope(check, request.body)
    for guardrail in guardrails.applicable(check.route.key, check.token.name, check.token.team, requested):
        if not guardrail.reads_input:  # built-in and webhook guardrails alike: neither can read token ids
            continue
        finding = {"category": TOKEN_IDS_CATEGORY, "message": _UNREADABLE}
        check.trace.setdefault("guardrails", []).append(
            {"guardrail": guardrail.key, "action": guardrail.action, "direction": "input", **finding})
        if guardrail.action in ("block", "mask"):
            raise GuardrailBlocked(guardrail.key, "block", [finding])
        log.info("guardrail could not read token-id input", extra={"fields": {
            "request_id": check.request_id, "guardrail": guardrail.key, "action": guardrail.action}})


def _input_finding(finding: dict[str, Any]) -> dict[str, Any]:
    """A chat finding of the view (`message_index`, `role`) as the embeddings input's (`input_index`)."""
    out = {k: v for k, v in finding.items() if k not in ("message_index", "role")}
    if "message_index" in finding:
        out["input_index"] = finding["message_index"]
    return out


def apply_input_masks(body: dict[str, Any], decision: Decision, policy: Policy) -> None:
    """Forwarding path: replace masked spans of the embeddings `input` before the provider sees it."""
    edits = decision.get(INPUT_MASKS)
    if not edits or decision.endpoint is not EndpointKind.EMBEDDINGS:
        return
    single = isinstance(body["input"], str)
    texts: list[str] = [body["input"]] if single else list(body["input"])
    by_input: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for index, start, end, placeholder in edits:
        by_input[index].append((start, end, placeholder))
    for index, spans in by_input.items():
        text = texts[index]
        # Right to left, so earlier offsets stay valid while later spans are replaced.
        for start, end, placeholder in sorted(spans, reverse=True):
            text = text[:start] + placeholder + text[end:]
        texts[index] = text
    body["input"] = texts[0] if single else texts
