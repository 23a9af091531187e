"""Output guardrails: whole completions before they reach the client, and streams as they pass.

Streams are scanned with a bounded hold-back window (StreamScanner), so a value split across
chunks is still caught; the role chunk and everything up to the window go out at once.
"""

from __future__ import annotations

import logging
from typing import Any

from sidecar.callout.handoff import Decision
from sidecar.core.errors import GuardrailBlocked
from sidecar.core.types import JSONDict
from sidecar.features.guardrails.decision_keys import REQUESTED_GUARDRAILS
from sidecar.features.guardrails.entity import Entity
from sidecar.features.guardrails.masking import MaskNumbering, mask_text
from sidecar.features.guardrails.pii import find_entities
from sidecar.features.guardrails.policy import FINDING_MESSAGES, Guardrail
from sidecar.features.guardrails.stream_scan import StreamScanner
from sidecar.policy.snapshot import Policy

log = logging.getLogger("sidecar.guardrails")


def output_guards_for(decision: Decision, policy: Policy) -> OutputGuardrails | None:
    requested = decision.get(REQUESTED_GUARDRAILS) or frozenset()
    guardrails = [g for g in policy.guardrails.applicable(decision.model_key, decision.token_name, decision.team,
                                                          requested) if g.checks_output]
    return OutputGuardrails(guardrails, decision.request_id) if guardrails else None


class OutputGuardrails:
    """All output guardrails of one exchange, applied in policy order."""

    def __init__(self, guardrails: list[Guardrail], request_id: str) -> None:
        self._guardrails = guardrails
        self._request_id = request_id
        self._numbering = MaskNumbering()
        # One scanner per (guardrail, choice index): n > 1 streams interleave choices.
        self._scanners: dict[tuple[str, int], StreamScanner] = {}
        # Counted by the metrics finisher when the exchange ends (guardrail, category, action).
        self.findings: list[dict[str, str]] = []
        # id, created and model of the stream, for the chunks that release held-back text.
        self._envelope: dict[str, Any] = {}

    def on_completion(self, completion: JSONDict) -> None:
        for choice in completion.get("choices") or ():
            message = choice.get("message") or {}
            content = message.get("content")
            if not isinstance(content, str):
                continue
            for guardrail in self._guardrails:
                entities = _find(guardrail, content)
                if entities:
                    self._act(guardrail, entities, choice.get("index", 0))
                    if guardrail.action == "mask":
                        content = mask_text(content, entities, self._numbering)
            message["content"] = content

    def on_chunk(self, chunk: JSONDict) -> list[JSONDict]:
        self._envelope = {key: chunk[key] for key in ("id", "created", "model") if key in chunk}
        choices = chunk.get("choices") or []
        if not choices and chunk.get("usage"):
            # The usage chunk ends the answer: text held back for want of a finish_reason goes first.
            return [*self.on_end(), chunk]
        for choice in choices:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            index = choice.get("index", 0)
            text = self._feed(index, content) if isinstance(content, str) else ""
            if choice.get("finish_reason") is not None:
                text += self._finish(index)
            if isinstance(content, str) or text:
                delta["content"] = text
                choice["delta"] = delta
        if choices and all(_empty(c) for c in choices):
            return []  # everything in it is being held back
        return [chunk]

    def on_end(self) -> list[JSONDict]:
        released = []
        for index in sorted({i for _, i in self._scanners}):
            text = self._finish(index)
            if text:
                released.append({**self._envelope, "object": "chat.completion.chunk",
                                 "choices": [{"index": index, "delta": {"content": text}, "finish_reason": None}]})
        return released

    def _feed(self, index: int, text: str) -> str:
        for guardrail in self._guardrails:
            scanner = self._scanner(guardrail, index)
            before = len(scanner.findings)
            text = scanner.feed(text)
            self._check_new(guardrail, scanner, before, index)
        return text

    def _finish(self, index: int) -> str:
        text = ""
        for guardrail in self._guardrails:
            scanner = self._scanner(guardrail, index)
            before = len(scanner.findings)
            text = scanner.feed(text) + scanner.finish() if text else scanner.finish()
            self._check_new(guardrail, scanner, before, index)
        return text

    def _scanner(self, guardrail: Guardrail, index: int) -> StreamScanner:
        key = (guardrail.key, index)
        if key not in self._scanners:
            finder = None if guardrail.type == "pii" else guardrail.matcher
            self._scanners[key] = StreamScanner(
                guardrail.categories if guardrail.type == "pii" else frozenset(), guardrail.hold_back,
                mask=guardrail.action == "mask", numbering=self._numbering,
                finder=finder.find if finder is not None else None)
        return self._scanners[key]

    def _check_new(self, guardrail: Guardrail, scanner: StreamScanner, before: int, index: int) -> None:
        new = scanner.findings[before:]
        if new:
            self._act(guardrail, list(new), index)

    def _act(self, guardrail: Guardrail, entities: list[Entity], choice_index: int) -> None:
        categories = sorted({e.category for e in entities})
        self.findings.extend({"guardrail": guardrail.key, "category": c, "action": guardrail.action}
                             for c in categories)
        log.info("guardrail finding", extra={"fields": {
            "request_id": self._request_id, "guardrail": guardrail.key, "action": guardrail.action,
            "direction": "output", "categories": categories, "choice_index": choice_index}})
        if guardrail.action == "block":
            raise GuardrailBlocked(guardrail.key, "block", [
                {"category": c, "message": FINDING_MESSAGES[guardrail.type], "choice_index": choice_index,
                 "role": "assistant"} for c in categories])


def _find(guardrail: Guardrail, text: str) -> list[Entity]:
    if guardrail.type == "pii":
        return find_entities(text, guardrail.categories)
    assert guardrail.matcher is not None
    return guardrail.matcher.find(text)


def _empty(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta") or {}
    return choice.get("finish_reason") is None and set(delta) <= {"content"} and not delta.get("content")
