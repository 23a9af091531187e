"""What the guardrails add to the callout's decision, as typed keys (see callout.handoff.DecisionKey).

- `MASKS`: the input mask edits the forwarding path applies to the provider-bound body, in
  reading order: (message index, content part index or messages.WHOLE_CONTENT, start, end, placeholder), offsets in
  characters of that text;
- `REQUESTED_GUARDRAILS`: the opt-in guardrail keys the request named (its `guardrails` field),
  which also apply to its output.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sidecar.callout.handoff import DecisionKey


class MaskEdit(NamedTuple):
    message_index: int
    part_index: int
    start: int
    end: int
    placeholder: str


def _decode_masks(value: Any) -> tuple[MaskEdit, ...]:
    return tuple(MaskEdit(int(m), int(p), int(s), int(e), str(text)) for m, p, s, e, text in value)


def _encode_masks(edits: tuple[MaskEdit, ...]) -> list[list[Any]]:
    return [list(edit) for edit in edits]


def _decode_keys(value: Any) -> frozenset[str]:
    return frozenset(str(key) for key in value)


MASKS: DecisionKey[tuple[MaskEdit, ...]] = DecisionKey("masks", _encode_masks, _decode_masks)
REQUESTED_GUARDRAILS: DecisionKey[frozenset[str]] = DecisionKey("requested_guardrails", sorted, _decode_keys)
