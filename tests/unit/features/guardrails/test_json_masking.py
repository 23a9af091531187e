"""Masks inside JSON keep the document valid JSON."""

from __future__ import annotations

import json

import pytest

from sidecar.core.entity import ALL_CATEGORIES
from sidecar.features.guardrails.masking import JsonState, MaskNumbering, json_safe, replace_spans, view_replacements
from sidecar.features.guardrails.pii import find_entities
from sidecar.features.guardrails.view import view_of


def mask_json(raw: str) -> str:
    view = view_of(raw, json=True)
    spans = view_replacements(view, find_entities(view.text, ALL_CATEGORIES), MaskNumbering())
    return replace_spans(raw, json_safe(raw, spans))


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"card": 4111111111111111, "n": 1}', {"card": "[CREDIT_CARD_1]", "n": 1}),
    ('[4111111111111111]', ["[CREDIT_CARD_1]"]),
    ('{"to": "pat.sample@example.com"}', {"to": "[EMAIL_1]"}),
    ('{"to": "pat.sample\\u0040example.com"}', {"to": "[EMAIL_1]"}),
    ('{"note": "card 4111 1111 1111 1111 ok"}', {"note": "card [CREDIT_CARD_1] ok"}),
    ('{"q": "say \\"pat.sample@example.com\\""}', {"q": 'say "[EMAIL_1]"'}),
    ('{"to": "pat.sample＠example.com", "also": "pat.sample@example.com"}', {"to": "[EMAIL_1]", "also": "[EMAIL_1]"}),
])
def test_masked_json_stays_valid(raw: str, expected: object) -> None:
    assert json.loads(mask_json(raw)) == expected


def test_state_follows_strings_and_escapes_across_pieces() -> None:
    state = JsonState()
    for piece in ('{"a": "x\\', '"', ' y", "b": ', "1"):
        state = state.advance(piece)
    assert state == JsonState(in_string=False)
    assert JsonState().advance('{"a": "x\\').escaped
    assert JsonState().advance('{"a": "x').in_string
