"""What the guardrails add to the callout's decision, as typed keys (see callout.handoff.DecisionKey).

- `MASKS`: the input mask edits the forwarding path applies to the provider-bound body: walker
  edits (`core.walk.Edit`: a path into the body, a character span of the string there, the
  placeholder), on the wire grouped by path as `[[path, [[start, end, placeholder], ...]], ...]`;
- `REQUESTED_GUARDRAILS`: the opt-in guardrail keys the request named (its `guardrails` field),
  which also apply to its output;
- `JSON_ANSWER`: the request asked for a JSON answer (`response_format` `json_object` or
  `json_schema`), so output masks must keep the answer valid JSON.
"""

from __future__ import annotations

from typing import Any

from sidecar.callout.handoff import DecisionKey
from sidecar.core.walk import Edit


def encode_edits(edits: tuple[Edit, ...]) -> list[list[Any]]:
    """Edits grouped by path, in first-seen order: `[[path, [[start, end, placeholder], ...]], ...]`."""
    grouped: dict[tuple[Any, ...], list[list[Any]]] = {}
    for edit in edits:
        grouped.setdefault(edit.path, []).append([edit.start, edit.end, edit.replacement])
    return [[list(path), spans] for path, spans in grouped.items()]


def _decode_edits(value: Any) -> tuple[Edit, ...]:
    return tuple(Edit(tuple(path), int(start), int(end), str(placeholder))
                 for path, spans in value for start, end, placeholder in spans)


def _decode_keys(value: Any) -> frozenset[str]:
    return frozenset(str(key) for key in value)


MASKS: DecisionKey[tuple[Edit, ...]] = DecisionKey("masks", encode_edits, _decode_edits)
REQUESTED_GUARDRAILS: DecisionKey[frozenset[str]] = DecisionKey("requested_guardrails", sorted, _decode_keys)
JSON_ANSWER: DecisionKey[bool] = DecisionKey("json_answer", bool, bool)
