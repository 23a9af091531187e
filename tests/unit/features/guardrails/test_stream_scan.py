from __future__ import annotations

import random

import pytest

from sidecar.core.entity import ALL_CATEGORIES, Entity
from sidecar.features.guardrails.masking import MaskNumbering, mask_text
from sidecar.features.guardrails.pii import find_entities
from sidecar.features.guardrails.stream_scan import MAX_HOLD, MIN_HOLD_BACK, StreamScanner
from sidecar.policy.patterns import compile_patterns

TEXT = (
    "Hello! Contact me at john.doe@example.com or call (415) 555-0132. "
    "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, key AKIAQ3EGQW2T7OXKR5ZM. "
    "电话13800138000，邮箱li@example.cn。 Bye."
)


def run(scanner: StreamScanner, text: str, sizes: tuple[int, int], seed: int = 0) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    pos = 0
    while pos < len(text):
        step = rng.randint(*sizes)
        out.append(scanner.feed(text[pos : pos + step]))
        pos += step
    out.append(scanner.finish())
    return "".join(out)


@pytest.mark.parametrize("sizes", [(1, 1), (1, 3), (5, 17), (200, 200)])
def test_findings_match_whole_text_scan(sizes: tuple[int, int]) -> None:
    scanner = StreamScanner(ALL_CATEGORIES)
    assert run(scanner, TEXT, sizes) == TEXT
    assert scanner.findings == find_entities(TEXT, ALL_CATEGORIES)


@pytest.mark.parametrize("sizes", [(1, 1), (1, 3), (4, 9)])
def test_mask_mode_equals_masking_the_whole_text(sizes: tuple[int, int]) -> None:
    scanner = StreamScanner(ALL_CATEGORIES, mask=True)
    expected = mask_text(TEXT, find_entities(TEXT, ALL_CATEGORIES), MaskNumbering())
    assert run(scanner, TEXT, sizes) == expected
    assert "[EMAIL_1]" in expected and "[PHONE_2]" in expected


def test_email_one_char_at_a_time_is_never_emitted_raw() -> None:
    scanner = StreamScanner(frozenset({"email"}), mask=True)
    emitted = ""
    for char in "x" * 100 + " write to alice@example.com please " + "y" * 100:
        emitted += scanner.feed(char)
        assert "alice@" not in emitted and "example.com" not in emitted
    emitted += scanner.finish()
    assert "[EMAIL_1]" in emitted
    assert [e.category for e in scanner.findings] == ["email"]


def test_findings_have_absolute_positions() -> None:
    prefix = "z" * 500 + " "
    text = prefix + "ssn 123-45-6789 end"
    scanner = StreamScanner(frozenset({"ssn"}))
    run(scanner, text, (1, 2))
    assert scanner.findings == [Entity("ssn", len(prefix) + 4, len(prefix) + 15)]
    assert text[scanner.findings[0].start : scanner.findings[0].end] == "123-45-6789"


def test_emits_everything_but_the_hold_back_window() -> None:
    scanner = StreamScanner(ALL_CATEGORIES, hold_back=64)
    out = scanner.feed("word " * 40)  # 200 chars, no PII
    assert 136 - 5 <= len(out) <= 136
    assert out + scanner.finish() == "word " * 40


def test_hold_back_has_a_floor() -> None:
    assert StreamScanner(ALL_CATEGORIES, hold_back=1).hold_back == MIN_HOLD_BACK


def test_long_token_is_held_until_complete() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
        ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    scanner = StreamScanner(frozenset({"secret"}), mask=True)
    emitted = "".join(scanner.feed(char) for char in f"token {jwt} done and more text follows here " * 1)
    assert "eyJ" not in emitted
    emitted += scanner.finish()
    assert emitted == "token [SECRET_1] done and more text follows here "


def test_open_pem_block_is_held() -> None:
    body = "\n".join(["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"] * 4)
    text = f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\nok"
    scanner = StreamScanner(frozenset({"secret"}), mask=True)
    emitted = ""
    for pos in range(0, len(text), 7):
        emitted += scanner.feed(text[pos : pos + 7])
        assert "MIIE" not in emitted
    assert emitted + scanner.finish() == "key:\n[SECRET_1]\nok"


def test_cue_word_already_emitted_still_counts() -> None:
    # "ssn" leaves the scanner before the number is released; the 32-char
    # context tail must keep it visible to the unformatted-SSN rule.
    text = "x" * 100 + " ssn" + " " * 20 + "123456789 " + "y " * 100
    scanner = StreamScanner(frozenset({"ssn"}))
    run(scanner, text, (1, 1))
    start = text.index("123456789")
    assert scanner.findings == [Entity("ssn", start, start + 9)]


def test_shared_numbering_with_request_masking() -> None:
    numbering = MaskNumbering()
    mask_text("a@example.com", find_entities("a@example.com", ALL_CATEGORIES), numbering)
    scanner = StreamScanner(ALL_CATEGORIES, mask=True, numbering=numbering)
    assert run(scanner, "reply to b@example.com and a@example.com ok", (1, 3)) == "reply to [EMAIL_2] and [EMAIL_1] ok"


def test_unknown_category_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="unknown"):
        StreamScanner(frozenset({"nope"}))


def test_work_per_feed_is_bounded() -> None:
    scanner = StreamScanner(ALL_CATEGORIES)
    for _ in range(5000):
        scanner.feed("lorem ipsum ")
        assert len(scanner._pending) <= scanner.hold_back + 12


def test_cjk_prose_without_spaces_streams_promptly() -> None:
    text = "今天天气很好我们去公园散步吧" * 40 + "请联系john@example.com谢谢" + "再见" * 50
    scanner = StreamScanner(ALL_CATEGORIES, mask=True)
    emitted = ""
    for index, char in enumerate(text):
        emitted += scanner.feed(char)
        assert len(emitted) >= index + 1 - scanner.hold_back - len("john@example.com")
    assert emitted + scanner.finish() == text.replace("john@example.com", "[EMAIL_1]")


def test_runaway_token_is_released_after_max_hold() -> None:
    scanner = StreamScanner(ALL_CATEGORIES)
    emitted = "".join(scanner.feed("a" * 1000) for _ in range(40))
    assert len(emitted) >= 40_000 - MAX_HOLD - 1000
    assert emitted + scanner.finish() == "a" * 40_000


def test_random_compositions_stream_equals_batch() -> None:
    pieces = [
        "john@example.com", "(415) 555-0132", "4111 1111 1111 1111", "10.0.0.1", "123-45-6789",
        "AKIAQ3EGQW2T7OXKR5ZM", "fe80::1", "DE89 3704 0044 0532 0130 00", "+44 20 7946 0958", "电话",
        "13800138000", "ssn", " ", ":", ".", "-", "@", "+", "(", "a", "1", "\n", "eyJ", "sk-", "x" * 70,
    ]  # fmt: skip
    rng = random.Random(11)
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        scanner = StreamScanner(ALL_CATEGORIES)
        assert run(scanner, text, (1, 8), seed=rng.randint(0, 10**6)) == text
        assert scanner.findings == find_entities(text, ALL_CATEGORIES), text


@pytest.mark.parametrize(("value", "json"), [
    ("a" * 60 + "\\u0040example.com", True),
    ("b" * 60 + "\uff20\u200bexample.com", False),
    ("c" * 60 + "@example.com", False),
    ("d" * 59 + "\u0430@ex\u0430mple.com", False),  # Cyrillic а in a token continues it
])
def test_long_obfuscated_value_is_held_back_whole(value: str, json: bool) -> None:
    scanner = StreamScanner(frozenset({"email"}), mask=True, json=json)
    text = "x" * 80 + " mail " + value + " thanks " + "y" * 80
    emitted = "".join(scanner.feed(char) for char in text) + scanner.finish()
    assert emitted.replace('"', "") == "x" * 80 + " mail [EMAIL_1] thanks " + "y" * 80


PHRASE = "project falcon alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"


@pytest.mark.parametrize("sizes", [(1, 1), (1, 4), (6, 11), (90, 90)])
@pytest.mark.parametrize(("deny", "keywords"), [
    ([], [PHRASE]),  # a keyword longer than any window
    ([r"project falcon(?: \w+){12}"], []),  # a bounded regex, as long
    ([r"project falcon.*?lima"], []),  # an unbounded one
])
def test_a_deny_value_longer_than_the_window_is_masked_whole(sizes: tuple[int, int], deny: list[str],
                                                             keywords: list[str]) -> None:
    matcher = compile_patterns(deny, keywords, [])
    scanner = StreamScanner(frozenset(), finder=matcher.find, mask=True, open_at=matcher.open_at)
    text = "Sure. " + "filler words " * 8 + f"The plan: {PHRASE}, then again {PHRASE}." + " more" * 20
    assert len(PHRASE) > scanner.hold_back
    emitted = run(scanner, text, sizes)
    assert emitted == text.replace(PHRASE, "[PATTERN_1]")  # one value, one placeholder; no word of it out
    first = text.index(PHRASE)
    second = text.index(PHRASE, first + 1)
    assert [(f.start, f.end) for f in scanner.findings] == [(first, first + len(PHRASE)),
                                                            (second, second + len(PHRASE))]


def test_without_open_at_a_value_longer_than_the_window_would_leak() -> None:
    # What open_at is for: the same stream, fed word by word, lets the phrase's first words out.
    matcher = compile_patterns([], [PHRASE], [])
    scanner = StreamScanner(frozenset(), finder=matcher.find, mask=True)
    text = "filler words " * 8 + PHRASE + " and more words" * 8
    emitted = "".join(scanner.feed(word + " ") for word in text.split(" ")) + scanner.finish()
    assert "project falcon alpha" in emitted


def test_a_begun_value_is_held_only_up_to_max_hold() -> None:
    matcher = compile_patterns([r"falcon.*plan"], [], [])
    scanner = StreamScanner(frozenset(), finder=matcher.find, mask=True, open_at=matcher.open_at)
    emitted = scanner.feed("a falcon ")
    emitted += "".join(scanner.feed("word ") for _ in range(MAX_HOLD // 5 + 100))
    assert emitted.startswith("a falcon word")  # released once held for MAX_HOLD characters
    assert len(scanner._pending) <= MAX_HOLD
