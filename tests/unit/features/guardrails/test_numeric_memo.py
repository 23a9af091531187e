"""A digit-run memo (streams scan overlapping windows) never changes what find_entities finds."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sidecar.core.entity import ALL_CATEGORIES
from sidecar.features.guardrails import pii
from sidecar.features.guardrails.pii import NumericMemo, find_entities
from sidecar.features.guardrails.stream_scan import StreamScanner

CORPUS = Path(__file__).resolve().parents[3] / "guardrails_corpus"
LINE = "Mail john@example.com, call (415) 555-0132, card 4111 1111 1111 1111, SSN 123-45-6789. "
PIECES = ["tel ", "order #", "version ", "+1 ", "(", ")", "-", ".", " ", "4111", "1111", "555", "0132", "10.0.0.1",
          "+44 20 7946 0958", "123-45-6789", "ssn ", "电话", "IP ", "5", "0", "v", "/"]


def texts() -> list[str]:
    rng = random.Random(3)
    lines = (CORPUS / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    out = [json.loads(line)["text"] for line in lines if line.strip()]
    out.append(LINE * 6)
    out.extend("".join(rng.choice(PIECES) for _ in range(rng.randint(5, 40))) for _ in range(400))
    return out


def windows(text: str, size: int, step: int) -> list[str]:
    return [text[max(0, end - size):end] for end in range(1, len(text) + step, step)]


def test_windows_find_the_same_with_and_without_a_memo() -> None:
    memo: NumericMemo = {}
    hits = 0
    for text in texts():
        for window in windows(text, 100, 3):
            expected = find_entities(window, ALL_CATEGORIES)
            assert find_entities(window, ALL_CATEGORIES, memo) == expected, window
            assert find_entities(window, ALL_CATEGORIES, memo) == expected, window  # from the memo now
            hits += bool(expected)
    assert hits > 1000


def test_the_memo_is_bounded() -> None:
    memo: NumericMemo = {}
    for number in range(pii.MEMO_ENTRIES * 2):
        find_entities(f"card 4111 1111 1111 {number:04d} x", ALL_CATEGORIES, memo)
    assert 0 < len(memo) <= pii.MEMO_ENTRIES


def test_a_stream_masks_as_before() -> None:
    text = LINE * 5
    for chunk in (1, 3, 7, 64):
        scanner = StreamScanner(ALL_CATEGORIES, mask=True)
        out = "".join(scanner.feed(text[i:i + chunk]) for i in range(0, len(text), chunk)) + scanner.finish()
        assert out == ("Mail [EMAIL_1], call [PHONE_1], card [CREDIT_CARD_1], SSN [SSN_1]. " * 5)
        assert scanner.findings == find_entities(text, ALL_CATEGORIES)
