"""Output guardrails: whole completions before they reach the client, and streams as they pass.

Every text of the answer that `sidecar.core.walk` yields is read (content, refusal,
reasoning_content/reasoning, every tool call's arguments, function_call arguments, the audio
transcript, content parts, reasoning_details, thinking_blocks, annotations and the string
leaves of unknown fields, for every choice), through the normalised view (view.py). Tool-call
arguments, and the content when the request asked for a JSON answer (`response_format`
json_object/json_schema), are read as JSON and masked so they stay valid JSON.

Streams are scanned with a bounded hold-back window per field, per choice and per tool call
(or reasoning_details item) (stream_fields.py), so a value split across chunks is still caught;
a chunk whose text is held back keeps its other fields (ids, names, finish_reason), and its
logprobs leave with its text; held text is released in its field's shape (stream_shapes.py).
Annotations and unknown fields arrive whole in one chunk: they are read whole there, with no
window.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sidecar.callout.handoff import Decision
from sidecar.core.entity import Entity, resolve_overlaps
from sidecar.core.errors import GuardrailBlocked
from sidecar.core.types import JSONDict
from sidecar.core.walk import Field, Text, chunk_texts, completion_texts, set_at
from sidecar.features.guardrails.decision_keys import JSON_ANSWER, REQUESTED_GUARDRAILS
from sidecar.features.guardrails.detect import Finder
from sidecar.features.guardrails.masking import MaskNumbering, json_safe, replace_spans, view_replacements
from sidecar.features.guardrails.stream_fields import LOGPROB_FIELDS, FieldStream, overlaps_any
from sidecar.features.guardrails.stream_scan import StreamScanner
from sidecar.features.guardrails.stream_shapes import carries_nothing as carries_nothing  # re-exported
from sidecar.features.guardrails.stream_shapes import put_text as put_text
from sidecar.features.guardrails.view import view_of
from sidecar.policy.guardrails import FINDING_MESSAGES, Action, Guardrail
from sidecar.policy.snapshot import Policy

log = logging.getLogger("sidecar.guardrails")
_ENVELOPE_KEYS = ("id", "created", "model")
# Set by the callout (install.py) when the request asked for a JSON answer.


def wants_json_answer(body: dict[str, Any]) -> bool:
    """True when `response_format.type` is `json_object` or `json_schema` (OpenAI's names)."""
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")


def output_guards_for(decision: Decision, policy: Policy) -> OutputGuardrails | None:
    requested = decision.get(REQUESTED_GUARDRAILS) or frozenset()
    guardrails = policy.guardrails.for_request(decision.model_key, decision.token_name, decision.team,
                                               requested).checks_output
    json_answer = decision.get(JSON_ANSWER) is True
    return OutputGuardrails(guardrails, decision.request_id, json_answer=json_answer) if guardrails else None


class OutputGuardrails:
    """All output guardrails of one exchange, sharing one scan per text (findings in policy order)."""

    def __init__(self, guardrails: Sequence[Guardrail], request_id: str, *, json_answer: bool = False) -> None:
        self._guardrails = guardrails
        self._masking = frozenset(g.key for g in guardrails if g.action is Action.MASK)
        self._finder = Finder(guardrails)
        self._request_id = request_id
        self._json_answer = json_answer
        self._numbering = MaskNumbering()
        self._streams: dict[tuple[int, Field, int], FieldStream] = {}
        # Counted by the metrics finisher when the exchange ends (guardrail, category, action).
        self.findings: list[dict[str, str]] = []
        # id, created and model of the stream, for the chunks that release held-back text.
        self._envelope: dict[str, Any] = {}

    def _is_json(self, field: Field) -> bool:
        return field.is_json or (self._json_answer and field is Field.CONTENT)

    def on_completion(self, completion: JSONDict) -> None:
        for text in completion_texts(completion):
            self._check_whole(completion, text)

    def _check_whole(self, root: JSONDict, text: Text) -> None:
        """Scan one text read whole (a completion's, or a chunk's whole value) and mask it in place."""
        json = self._is_json(text.field)
        view = view_of(text.text, json=json)
        entities = self._finder(view.text)
        if not entities:
            return
        self._act(entities, text.owner_index, text.field)
        masked = resolve_overlaps(e for e in entities if self._finder.source(e) in self._masking)
        if masked:
            spans = view_replacements(view, masked, self._numbering)
            spans = json_safe(text.text, spans) if json else spans
            set_at(root, text.path, replace_spans(text.text, spans))
            if text.field in LOGPROB_FIELDS:
                drop_masked_logprobs(root["choices"][text.path[1]], text.field,
                                     [(start, end) for start, end, _ in spans])

    def on_chunk(self, chunk: JSONDict) -> list[JSONDict]:
        self._envelope = _envelope(chunk)
        choices = chunk.get("choices") or []
        if not choices and chunk.get("usage"):
            # The usage chunk ends the answer: text held back for want of a finish_reason goes first.
            return [*self.on_end(), chunk]
        logprobs_fed: set[tuple[int, Field]] = set()
        whole: list[Text] = []
        for text in chunk_texts(chunk, whole):
            assert text.key is not None
            choice = chunk["choices"][text.path[1]]
            entries = take_logprobs(choice, text.field) if choice.get("logprobs") else None
            out, released = self._stream(text.key).feed(text.text, entries)
            set_at(chunk, text.path, out)
            if entries is not None:
                logprobs_fed.add((text.key[0], text.field))
                put_logprobs(choice, text.field, released)
        if whole:  # annotations, unknown fields: sent whole, so read whole in their chunk
            for text in whole:
                self._check_whole(chunk, text)
        for position, choice in enumerate(choices):
            if isinstance(choice, dict):
                if choice.get("logprobs"):
                    self._feed_bare_logprobs(choice, position, logprobs_fed)
                if choice.get("finish_reason") is not None:
                    self._finish_choice(choice, choice_index(choice, position))
        if choices and not chunk.get("usage") and _all_held(choices):
            return []  # everything in it is being held back
        return [chunk]

    def on_end(self) -> list[JSONDict]:
        released = []
        for index in sorted({key[0] for key in self._streams}):
            choice: dict[str, Any] = {"index": index, "delta": {}, "finish_reason": None}
            self._finish_choice(choice, index)
            if not carries_nothing(choice):
                released.append({**self._envelope, "object": "chat.completion.chunk", "choices": [choice]})
        return released

    def _feed_bare_logprobs(self, choice: dict[str, Any], position: int, fed: set[tuple[int, Field]]) -> None:
        """Logprobs entries of a chunk without text in their field (an empty token) queue all the same."""
        index = choice_index(choice, position)
        for field in LOGPROB_FIELDS:
            if (index, field) in fed:
                continue
            entries = take_logprobs(choice, field)
            if entries is not None:
                _, released = self._stream((index, field, 0)).feed("", entries)
                put_logprobs(choice, field, released)

    def _finish_choice(self, choice: dict[str, Any], index: int) -> None:
        for key in sorted((k for k in self._streams if k[0] == index), key=lambda k: (k[1].value, k[2])):
            text, entries = self._streams.pop(key).finish()
            if text:
                put_text(choice.setdefault("delta", {}), key[1], key[2], text)
            if key[1] in LOGPROB_FIELDS and entries:
                logprobs = choice.get("logprobs")
                held = (logprobs or {}).get(LOGPROB_FIELDS[key[1]]) or []
                put_logprobs(choice, key[1], [*held, *entries])

    def _stream(self, key: tuple[int, Field, int]) -> FieldStream:
        stream = self._streams.get(key)
        if stream is None:
            index, field, _ = key
            hold_back = max(g.hold_back for g in self._guardrails)
            scanner = StreamScanner(frozenset(), hold_back, numbering=self._numbering, finder=self._finder,
                                    json=self._is_json(field), masks=lambda e: self._finder.source(e) in self._masking,
                                    open_at=self._finder.open_at if self._finder.has_patterns else None)
            stream = self._streams[key] = FieldStream(scanner, lambda found: self._act(found, index, field))
        return stream

    def _act(self, entities: list[Entity], choice_index: int, field: Field) -> None:
        """Count and log each guardrail's findings, in policy order; the first block raises."""
        for guardrail in self._guardrails:
            categories = sorted({e.category for e in entities if self._finder.source(e) == guardrail.key})
            if categories:
                self._report(guardrail, categories, choice_index, field)

    def _report(self, guardrail: Guardrail, categories: list[str], choice_index: int, field: Field) -> None:
        self.findings.extend({"guardrail": guardrail.key, "category": c, "action": guardrail.action}
                             for c in categories)
        log.info("guardrail finding", extra={"fields": {
            "request_id": self._request_id, "guardrail": guardrail.key, "action": guardrail.action,
            "direction": "output", "categories": categories, "choice_index": choice_index, "field": field.value}})
        if guardrail.action is Action.BLOCK:
            raise GuardrailBlocked(guardrail.key, Action.BLOCK, [
                {"category": c, "message": FINDING_MESSAGES[guardrail.type], "choice_index": choice_index,
                 "role": "assistant"} for c in categories])


def _envelope(chunk: JSONDict) -> dict[str, Any]:
    # Plain statements: a comprehension costs a frame per chunk.
    envelope = {}
    for key in _ENVELOPE_KEYS:
        if key in chunk:
            envelope[key] = chunk[key]
    return envelope


def _all_held(choices: list[Any]) -> bool:
    for choice in choices:  # a loop, not all(...) over a generator: once per chunk
        if not isinstance(choice, dict) or not carries_nothing(choice):
            break
    else:
        return True
    return False


def choice_index(choice: dict[str, Any], position: int) -> int:
    """A stream choice's `index` (its position in the chunk when it has none)."""
    index = choice.get("index", position)
    return index if isinstance(index, int) else position


def take_logprobs(choice: dict[str, Any], field: Field) -> list[Any] | None:
    """The choice's logprobs entries of `field` (`content` or `refusal`), None when it has none."""
    name = LOGPROB_FIELDS.get(field)
    logprobs = choice.get("logprobs")
    if name is None or not isinstance(logprobs, dict) or not isinstance(logprobs.get(name), list):
        return None
    entries: list[Any] = logprobs[name]
    return entries


def drop_masked_logprobs(choice: dict[str, Any], field: Field, spans: list[tuple[int, int]]) -> None:
    """A whole completion's logprobs entries whose token overlaps a masked value go (as in streams)."""
    entries = take_logprobs(choice, field)
    if not entries:
        return
    kept, offset = [], 0
    for entry in entries:
        token = entry.get("token") if isinstance(entry, dict) else None
        end = offset + (len(token) if isinstance(token, str) else 0)
        if not overlaps_any(offset, end, spans):
            kept.append(entry)
        offset = end
    put_logprobs(choice, field, kept)


def put_logprobs(choice: dict[str, Any], field: Field, entries: list[Any]) -> None:
    """Set the choice's logprobs entries of `field` (creating `logprobs` only for entries)."""
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        logprobs[LOGPROB_FIELDS[field]] = entries
    elif entries:
        choice["logprobs"] = {LOGPROB_FIELDS[field]: entries}
