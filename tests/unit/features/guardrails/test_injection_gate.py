"""The word gate of each injection rule never hides a match its regex would find."""

from __future__ import annotations

import random
import re
import warnings
from typing import Any

import pytest

from sidecar.features.guardrails import injection
from sidecar.features.guardrails.injection_gate import GATES, WordGate

from .test_injection_equivalence import corpus_texts, generated_texts
from .test_injection_literals import variants

with warnings.catch_warnings():  # the parser behind `re`, to write texts each rule alternative matches
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants as sc
    import sre_parse

RULES = {name: rule for name, _, rule in injection._WORD_RULES}
# Every word the rules spell, so mutated texts keep landing near a match.
VOCABULARY = sorted({word for rule in RULES.values() for word in re.findall(r"[a-z']{2,}", rule.pattern)})


def normalised_texts() -> list[str]:
    texts = [v for t in corpus_texts() for v in variants(t)] + generated_texts(3000, 11)
    return [injection._normalise(text) for text in texts]


def mutated(rng: random.Random, text: str) -> str:
    """`text` with a few words inserted, dropped, glued, cut or joined by an apostrophe."""
    words = text.split(" ")
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(words) + 1)
        roll = rng.random()
        if roll < 0.3:
            words.insert(at, rng.choice(VOCABULARY))
        elif roll < 0.45 and len(words) > 1:
            del words[min(at, len(words) - 1)]
        elif roll < 0.6 and words:
            index = min(at, len(words) - 1)
            words[index] = rng.choice(["", "x", "un", "re"]) + words[index] + rng.choice(["", "s", "ed", "ing", "x"])
        elif roll < 0.75 and words:
            words[min(at, len(words) - 1)] = words[min(at, len(words) - 1)][:rng.randint(1, 6)]
        elif at < len(words) - 1:
            words[at:at + 2] = [words[at] + rng.choice(["'", "", "' "]) + words[at + 1]]
    return injection._normalise(" ".join(words))


LETTERS = "abcdefghijklmnopqrstuvwxyz"
ALPHABET = LETTERS + "' "


def _members(items: list[tuple[Any, Any]]) -> str:
    chars, negate = "", False
    for op, value in items:
        if op is sc.NEGATE:
            negate = True
        elif op is sc.LITERAL:
            chars += chr(value)
        elif op is sc.RANGE:
            chars += "".join(chr(c) for c in range(value[0], value[1] + 1))
        elif op is sc.CATEGORY:
            chars += {sc.CATEGORY_SPACE: " ", sc.CATEGORY_WORD: LETTERS}.get(value, "")
    return "".join(c for c in ALPHABET if (c in chars) != negate)


def sample(rng: random.Random, pattern: Any) -> str:
    """A random string the parsed `pattern` may match (a word boundary writes a space; lookaheads are
    not enforced, so some strings do not match)."""
    out = ""
    for op, value in pattern:
        if op is sc.AT and value is sc.AT_BOUNDARY and out and not out.endswith(" "):
            out += " "
        elif op is sc.LITERAL:
            out += chr(value)
        elif op is sc.IN:
            out += rng.choice(_members(value) or " ")
        elif op is sc.ANY:
            out += rng.choice(ALPHABET)
        elif op is sc.BRANCH:
            out += sample(rng, rng.choice(value[1]))
        elif op is sc.SUBPATTERN:
            out += sample(rng, value[3])
        elif op in (sc.MAX_REPEAT, sc.MIN_REPEAT):
            low, high, inner = value
            out += "".join(sample(rng, inner) for _ in range(rng.randint(low, min(high, low + 3))))
    return out


def assert_gate_allows_matches(texts: list[str]) -> dict[str, int]:
    matched = dict.fromkeys(RULES, 0)
    for text in texts:
        gate = WordGate(text)
        for name, rule in RULES.items():
            if rule.search(text):
                matched[name] += 1
                assert gate.may_fire(name), (name, text[:160])
    return matched


def test_every_rule_has_a_gate_of_four_letter_heads() -> None:
    assert set(GATES) == set(RULES)
    for groups in GATES.values():
        for group in groups:
            assert all(len(head) == 4 for head in group.heads)


def test_a_rule_that_matches_passes_its_gate() -> None:
    matched = assert_gate_allows_matches(normalised_texts())
    assert all(matched.values()), matched


def test_mutations_of_matching_texts_never_slip_past_the_gate() -> None:
    rng = random.Random(5)
    near = [text for text in normalised_texts() if any(rule.search(text) for rule in RULES.values())]
    texts = [mutated(rng, rng.choice(near)) for _ in range(20_000)]
    matched = assert_gate_allows_matches(texts)
    assert min(matched.values()) > 20, matched


@pytest.mark.parametrize("name", sorted(RULES))
def test_texts_written_from_each_rule_pass_its_gate(name: str) -> None:
    rng = random.Random(name)
    parsed = sre_parse.parse(RULES[name].pattern)
    around = ["", "so ", "well i'd say ", "x'", "please "]
    texts = [injection._normalise(rng.choice(around) + sample(rng, parsed) + rng.choice(["", " now", "'s", "ed x"]))
             for _ in range(4000)]
    assert assert_gate_allows_matches(texts)[name] > 400


@pytest.mark.parametrize("text", [
    "the committee reviewed the quarterly weather summary and agreed",
    "what is the weather like and could you show me the forecast",
    "follow the river downstream and you will find the mill",
])
def test_prose_is_gated_off_most_rules(text: str) -> None:
    gate = WordGate(injection._normalise(text))
    assert sum(gate.may_fire(name) for name in RULES) <= 2
