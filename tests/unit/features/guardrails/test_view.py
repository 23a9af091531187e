"""The normalised view detectors read, and the raw offsets behind it."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest

from sidecar.core.entity import ALL_CATEGORIES
from sidecar.features.guardrails.pii import find_entities
from sidecar.features.guardrails.view import _IGNORABLE, view_of
from sidecar.policy.patterns import compile_patterns

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize(("raw", "seen"), [
    ("mail pat.sample@\u200bexample.com", "mail pat.sample@example.com"),
    ("pat.sample\uff20example.com", "pat.sample@example.com"),
    ("pat.sample\ufe6bexample.com", "pat.sample@example.com"),
    ("card " + "4111 1111 1111 1111".translate(FULL_WIDTH), "card 4111 1111 1111 1111"),
    ("card 4111\u200b1111\u200c1111\u200d1111", "card 4111111111111111"),
    ("ssn 123\u00ad-45\u2060-6789\ufeff", "ssn 123-45-6789"),
    ("\u0664\u0661\u0661\u0661 \u096a\u0967", "4111 41"),  # Arabic-Indic and Devanagari digits
    ("\ufb01le", "file"),  # NFKC compatibility ligature
    ("mail j\u0430ne@ex\u0430mple.com", "mail jane@example.com"),  # Cyrillic а drawn like a
    ("Ign\u043ere previ\u03bfus", "Ignore previous"),  # Cyrillic and Greek o
    ("\u0410BC x\u0391\u0392", "ABC xAB"),  # capitals of both scripts, in a token with ASCII letters
    ("\u0410\u0412\u0415 \u0441\u043e\u0440", "\u0410\u0412\u0415 \u0441\u043e\u0440"),  # a token of one script alone: as written
    ("café 中文", "café 中文"),  # nothing to normalise: the text itself
])
def test_view_text(raw: str, seen: str) -> None:
    assert view_of(raw).text == seen


@pytest.mark.parametrize("raw", ["plain ascii text", "café 中文 ok"])
def test_unchanged_text_needs_no_map(raw: str) -> None:
    view = view_of(raw)
    assert view.text is raw and view.maps == ()


def test_raw_span_covers_the_original_characters() -> None:
    raw = "write to pat.sample\uff20\u200bexample.com today"
    view = view_of(raw)
    (entity,) = find_entities(view.text, ALL_CATEGORIES)
    start, end = view.raw_span(entity.start, entity.end)
    assert raw[start:end] == "pat.sample\uff20\u200bexample.com"


def test_json_escapes_are_decoded_with_offsets_into_the_escaped_text() -> None:
    raw = '{"to": "pat.sample\\u0040example.com", "q": "\\"x\\"", "e": "\\ud83d\\ude00"}'
    view = view_of(raw, json=True)
    assert view.text == '{"to": "pat.sample@example.com", "q": ""x"", "e": "\U0001f600"}'
    (entity,) = find_entities(view.text, ALL_CATEGORIES)
    start, end = view.raw_span(entity.start, entity.end)
    assert raw[start:end] == "pat.sample\\u0040example.com"


@pytest.mark.parametrize("raw", [
    "a\u200b\u200cb ＠ \ufb01x \u0664\u0661 end", "\u200b" * 5 + "x", "ﬁﬁﬁ@ﬁ", "中文\u00ad中文４",
])
def test_every_view_character_maps_back_in_order(raw: str) -> None:
    view = view_of(raw)
    spans = [view.raw_span(i, i + 1) for i in range(len(view.text))]
    assert all(0 <= a < b <= len(raw) for a, b in spans)
    assert spans == sorted(spans)
    for (a, b), char in zip(spans, view.text, strict=True):
        assert view_of(raw[a:b]).text.find(char) != -1


def test_json_escapes_are_read_only_for_json_texts() -> None:
    assert view_of("a\\u0040b").text == "a\\u0040b"


def test_the_ignorable_class_covers_every_format_character() -> None:
    ignorable = re.compile(f"[{_IGNORABLE}]")
    missing = [hex(c) for c in range(sys.maxunicode + 1)
               if unicodedata.category(chr(c)) == "Cf" and not ignorable.match(chr(c))]
    assert missing == []


@pytest.mark.parametrize("at", [4090, 4093, 4096, 8190])
def test_values_across_the_scan_blocks_of_a_long_text(at: int) -> None:
    email = "pat.sample\u200b@\u200bexample.com"
    raw = "x " * (at // 2) + email + " ok " + "中" + "\u200b" * 3 + "y" * 5000 + " ４１１１ １１１１ １１１１ １１１１"
    view = view_of(raw)
    found = find_entities(view.text, ALL_CATEGORIES)
    assert [e.category for e in found] == ["email", "credit_card"]
    spans = [view.raw_span(e.start, e.end) for e in found]
    assert raw[spans[0][0]:spans[0][1]] == email
    assert raw[spans[1][0]:spans[1][1]] == "４１１１ １１１１ １１１１ １１１１"


def test_look_alike_letters_map_back_to_the_raw_value() -> None:
    raw = "write to j\u0430ne@ex\u0430mple.com today"
    view = view_of(raw)
    (found,) = find_entities(view.text, ALL_CATEGORIES)
    start, end = view.raw_span(found.start, found.end)
    assert (found.category, raw[start:end]) == ("email", "j\u0430ne@ex\u0430mple.com")


@pytest.mark.parametrize("prose", [
    "Привет! Как дела? Встретимся завтра в офисе на Тверской, позвоните мне.",
    "Καλημέρα, τι κάνεις; Θα τα πούμε αύριο στο γραφείο.",
    "Բարև, ինչպես ես։ Կհանդիպենք վաղը գրասենյակում։",
])
def test_prose_in_those_scripts_yields_no_finding(prose: str) -> None:
    assert find_entities(view_of(prose).text, ALL_CATEGORIES) == []


def test_keywords_written_in_those_scripts_still_match_their_prose() -> None:
    # The fold touches mixed-script tokens only, so a policy's Russian or Greek deny values and
    # allow-regexes read the text as written (a fold of every look-alike turned секрет into ceкpeт).
    matcher = compile_patterns([r"код \d{4}", "Αθήνα"], ["секрет", "пароль"], [])
    text = "Это секрет, пароль и код 1234, встреча в Αθήνα."
    view = view_of(text)
    assert [view.text[e.start:e.end] for e in matcher.find(view.text)] == ["секрет", "пароль", "код 1234", "Αθήνα"]
