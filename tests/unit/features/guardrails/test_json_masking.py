"""Masks inside JSON keep the document valid JSON."""

from __future__ import annotations

import json

import pytest

from sidecar.core.entity import ALL_CATEGORIES
from sidecar.features.guardrails.masking import (
    JsonState,
    MaskNumbering,
    bare_token_cut,
    json_safe,
    replace_spans,
    view_replacements,
)
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


# ---- any placeholder (a webhook's `replacement`), any span: the document stays valid JSON ----------

HOSTILE = 'x"}, "evil": "1'
DOCUMENT = '{"a": "zeb\\"ra", "b": [1, -2.5e3, true, null], "c": "\\u00e9t\\u00e9 \\\\ ok", "d": {"e": "f"}}'


def masked(raw: str, spans: list[tuple[int, int, str]], state: JsonState | None = None) -> str:
    return replace_spans(raw, json_safe(raw, spans, state or JsonState()))


@pytest.mark.parametrize(("word", "replacement", "expected"), [
    ("zebra", HOSTILE, {"animal": HOSTILE, "n": 1}),  # no key added
    ("zebra", "C:\\redacted", {"animal": "C:\\redacted", "n": 1}),  # no `\r` escape
    ("zebra", "tab\there\u2028\x00", {"animal": "tab\there\u2028\x00", "n": 1}),
    ("1", HOSTILE, {"animal": "zebra", "n": HOSTILE}),  # a bare number: the replacement as a JSON string
])
def test_a_replacement_is_escaped_where_it_lands(word: str, replacement: str, expected: object) -> None:
    raw = '{"animal": "zebra", "n": 1}'
    start = raw.index(word, 10)
    assert json.loads(masked(raw, [(start, start + len(word), replacement)])) == expected


def test_a_span_across_structure_masks_each_value_it_touches() -> None:
    raw = '{"a": "SECRET", "b": "END", "c": 2}'
    start, end = raw.index("SECRET"), raw.index("END") + 3
    assert json.loads(masked(raw, [(start, end, HOSTILE)])) == {"a": HOSTILE, HOSTILE: HOSTILE, "c": 2}
    # Structure only (`", "`): nothing to replace.
    assert masked(raw, [(start + 6, start + 10, "[X]")]) == raw
    # From inside a number to inside a literal: both tokens whole.
    listed = '[12345, true]'
    assert json.loads(masked(listed, [(2, 10, "[X]")])) == ["[X]", "[X]"]


def test_every_span_of_a_document_with_escapes_keeps_it_valid() -> None:
    for start in range(len(DOCUMENT)):
        for end in range(start + 1, len(DOCUMENT) + 1):
            out = masked(DOCUMENT, [(start, end, HOSTILE)])
            try:
                json.loads(out)
            except ValueError as exc:
                raise AssertionError(f"span {start}:{end} -> {out!r}") from exc


def test_every_span_of_a_stream_window_keeps_the_whole_valid() -> None:
    # A window may start anywhere (inside a string, right after a backslash, inside `\u00e9`) but
    # inside a bare token (bare_token_cut); the text before it was released unmasked, and the
    # state says where the window starts.
    raw = '{"e": "x\\u00e9y\\"z", "n": 42, "t": true}'
    cuts = {bare_token_cut(raw, cut) for cut in range(1, len(raw))} - {0}
    assert raw.index("42") in cuts and raw.index("42") + 1 not in cuts and raw.index("rue") not in cuts
    for cut in sorted(cuts):
        state, window = JsonState().advance(raw[:cut]), raw[cut:]
        for start in range(len(window)):
            for end in range(start + 1, len(window) + 1):
                out = raw[:cut] + masked(window, [(start, end, HOSTILE)], state)
                json.loads(out)


def test_state_counts_the_hex_digits_of_a_split_unicode_escape() -> None:
    assert JsonState().advance('{"a": "\\u00') == JsonState(in_string=True, hex_left=2)
    assert JsonState().advance('{"a": "\\').advance("u0").advance("0e9").advance('"') == JsonState()
    assert JsonState(in_string=True, hex_left=2).advance('e9"') == JsonState()


def test_a_cut_never_splits_a_bare_token() -> None:
    raw = '{"n": 4111111111111111, "s": "a 12 b"}'
    number = raw.index("4111")
    assert bare_token_cut(raw, number + 5) == number  # inside the number
    assert bare_token_cut(raw, number + 16) == number + 16  # at its end: `,` follows
    assert bare_token_cut(raw[:number + 3], number + 3) == number  # the number may go on
    inside = raw.index("12")
    assert bare_token_cut(raw, inside + 1) == inside + 1  # digits inside a string are text
