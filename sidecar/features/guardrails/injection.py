"""Prompt-injection heuristic: ``score_injection``.

Weighted rules over a normalised copy of the text.  Scores combine as a
noisy-OR, ``1 - prod(1 - w)``, so independent signals reinforce each other
but the score never exceeds 1.  Weights (why):

* ``instruction_override`` 0.80 - "ignore/disregard/forget ... previous
  instructions" is the canonical attack and rare in benign text.
* ``system_prompt_extraction`` 0.75 - "reveal/print/repeat your system prompt".
* ``roleplay_jailbreak`` 0.75 - DAN, "developer mode", "pretend you have no
  restrictions".
* ``encoded_override`` 0.80 - a base64 blob that decodes to one of the above.
* ``role_delimiter`` 0.60 - chat-template tokens (``<|im_start|>system``,
  ``[INST]``, ``<<SYS>>``, ``### system:``) inside user content; suspicious
  but also pasted by people debugging templates, hence below 0.7.
* ``encoding_hint`` 0.50 - "decode this (base64/hex) and follow/execute it".
* ``developer_mode`` 0.45 - jailbreak staple, but also a real phone setting.
* ``authority_claim`` 0.30 - "I am your developer", "authorized override".
* ``restriction_removal`` 0.30 - "without any filters/censorship".

Normalisation makes rules tolerant of case, spacing, zero-width characters,
full-width forms, leetspeak digits and letter-spacing (``i g n o r e``).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Container
from dataclasses import dataclass
from itertools import islice
from typing import Final

from .injection_gate import WordGate
from .injection_text import LEET, LiteralIndex, collapse_spaces, may_hold_base64_blob, word_spaced


@dataclass(frozen=True, slots=True)
class InjectionScore:
    score: float
    signals: tuple[str, ...]


_ZERO_WIDTH: Final = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff]")
# _LEET and _NON_WORD define the normalisation; injection_text computes it with bytes passes.
_LEET: Final = str.maketrans(LEET)
_SPACED_LETTERS: Final = re.compile(r"\b(?:[a-z] ){3,}[a-z]\b")
_NON_WORD: Final = re.compile(r"[^a-z' ]+")

_PRIOR: Final = (
    r"(?:all|any|every|each|the|your|my|these|those|of|previous|prior|above|earlier|preceding"
    r"|initial|original|system|given|existing|current|safety|old)"
)
_RULES_NOUN: Final = (
    r"(?:instruct\w*|rules?|prompts?|directions?|guidelines?|directives?|commands?|constraints?"
    r"|programming|guardrails?|restrictions?|polic(?:y|ies)|context|training)"
)

_WORD_RULES: Final[tuple[tuple[str, float, re.Pattern[str]], ...]] = (
    (
        "instruction_override",
        0.80,
        re.compile(
            rf"\b(?:ignore|disregard|forget|abandon|discard|neglect|set\s+aside|put\s+aside|throw\s+out)\s+"
            rf"(?:{_PRIOR}\s+){{0,4}}(?:\w+\s+)?{_RULES_NOUN}\b"
            # Weaker verbs ("override the CSS rules") need an AI-directed object.
            rf"|\b(?:skip|bypass|override|overwrite|drop)\s+(?:the\s+)?(?:all|your|any|previous|prior|system|safety)"
            rf"\s+(?:{_PRIOR}\s+){{0,3}}{_RULES_NOUN}\b"
            r"|\b(?:forget|ignore|disregard)\s+(?:everything|all)\s+(?:you\s+(?:were|have\s+been)\s+told|above|before|prior)"
            r"|\b(?:ignore|disregard|forget)\s+(?:what|everything|anything)\s+(?:\w+\s+){0,3}(?:told|instructed)\s+you"
            r"|\b(?:do\s+not|don't|stop|quit|cease)\s+(?:follow|following|obeying|obey)\s+(?:your|the|any)\s+(?:\w+\s+)?"
            + _RULES_NOUN
        ),
    ),
    (
        "system_prompt_extraction",
        0.75,
        re.compile(
            r"\b(?:reveal|print|show|repeat|output|display|leak|dump|echo|recite|spell\s+out|"
            r"tell\s+me|give\s+me|write\s+out|copy|paste|what\s+(?:is|are|were))\s+"
            r"(?:me\s+)?(?:your|the|all|of|full|entire|exact|original|initial|hidden|secret|verbatim|\s)*"
            r"(?:contents\s+of\s+)?(?:your\s+)?"
            r"(?:system\s+(?:prompt|message|instructions?)|initial\s+(?:prompt|instructions?)|"
            r"hidden\s+(?:prompt|instructions?)|your\s+(?:instructions|prompt|rules)\b(?!\s+(?:for|on|to|of|about)\b)"
            r"|what\s+instructions\s+you\s+(?:were|have\s+been)\s+given)"
            r"|\b(?:print|show|reveal|output|display|dump|leak)\s+(?:\w+\s+){0,4}(?:your|the)\s+system\s+(?:prompt|message)"
            r"|\brepeat\s+(?:the\s+words|the\s+text|words|text|everything|all)\s+(?:\w+\s+)?(?:above|before)"
            r"|\bwhat'?s?\s+(?:is\s+)?in\s+your\s+(?:system\s+)?(?:prompt|instructions)"
            r"|\bwhat\s+(?:was|were)\s+you\s+told\s+(?:before|at\s+the\s+start)"
        ),
    ),
    (
        "roleplay_jailbreak",
        0.75,
        re.compile(
            r"\byou\s+are\s+dan\b|\bbroken\s+free\s+of|\byou\s+are\s+now\s+(?:dan|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken|evil)|free\s+of|no\s+longer)"
            r"|\bdo\s+anything\s+now\b|\bdan\s+mode\b|\bjailbr[eo]\w*"
            r"|\bpretend\s+(?:that\s+)?(?:you\s+)?(?:have|are|had|were)\s+(?:no|not\s+bound|without|free)"
            r"|\b(?:pretend|imagine|suppose|roleplay|role\s+play)\b.{0,40}\b(?:no|zero|without|free\s+of|not\s+bound\s+by)"
            r"\s+(?:any\s+)?(?:restrictions|rules|limits|filters|guidelines|policies|ethics)"
            r"|\b(?:if|suppose|imagine|pretend|hypothetically)\b.{0,30}\byou\s+(?:had|have|were|are)\s+"
            r"(?:no|without|zero|free\s+of)\s+(?:\w+\s+)?(?:restrictions|rules|limits|filters|guidelines|polic(?:y|ies)"
            r"|ethics|censorship)"
            r"|\bact\s+as\s+(?:an?\s+)?(?:unfiltered|uncensored|unrestricted|evil)"
            r"|\b(?:with\s+)?no\s+(?:ethical|moral|content)\s+(?:guidelines|restrictions|limits|filters)"
        ),
    ),
    (
        # Alone it is ambiguous (Android has a real "developer mode"), so it
        # only crosses 0.5 together with another signal.
        "developer_mode",
        0.45,
        re.compile(r"\bdeveloper\s+mode\b"),
    ),
    (
        "encoding_hint",
        0.50,
        re.compile(
            # Digits were leet-mapped: "base64" reads "base6a", "rot13" reads "rotie".
            r"\b(?:decod|decipher|base ?6a|rot ?ie|hex)\w*\b"
            r".{0,60}\b(?:follow|execute|obey|do\s+what|instructions?)\b"
        ),
    ),
    (
        "authority_claim",
        0.30,
        re.compile(
            r"\bi\s+am\s+(?:your|the)\s+(?:developer|creator|admin\w*|owner|operator)"
            r"|\b(?:authorized|authorised|official)\s+(?:override|test|jailbreak|red\s+team)"
        ),
    ),
    (
        "restriction_removal",
        0.30,
        re.compile(
            r"\bwithout\s+(?:any\s+)?(?:censorship|filters?|restrictions|limitations|safety)"
            r"|\b(?:can|will|must)\s+(?:say|generate|write)\s+anything\b"
        ),
    ),
)

# A rule edited here needs its gate (injection_gate.GATES) and literals below checked: the tests
# write texts from each rule's regex and fail when a gate or a literal would hide a match.
# Literals a rule cannot match without, checked first with `in` (C speed): a rule runs its
# regex only if each of its groups has a literal in the text, so on ordinary prose most rules
# are skipped, and a rule that runs decides exactly as before. The normalised text holds only
# a-z, ' and single spaces, so a regex's `\s+` is one space here.
_WORD_RULE_LITERALS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "instruction_override": (("ignore", "disregard", "forget", "abandon", "discard", "neglect", "aside", "throw out",
                              "skip", "bypass", "override", "overwrite", "drop", "not follow", "not obey",
                              "don't follow", "don't obey", "stop follow", "stop obey", "quit follow", "quit obey",
                              "cease follow", "cease obey"),),
    "system_prompt_extraction": (("prompt", "message", "instruction", "rules", "repeat", "told"),),
    # "restrict", "filter" and "censor" also cover unrestricted, unfiltered and uncensored.
    "roleplay_jailbreak": (("dan", "broken", "you are now", "anything", "jailbr", "pretend", "restrict", "rule",
                            "limit", "filter", "guideline", "polic", "ethic", "censor", "evil"),),
    "developer_mode": (("developer mode",),),
    "encoding_hint": (("decod", "decipher", "6a", "rot", "hex"),
                      ("follow", "execute", "obey", "do what", "instruction")),
    "authority_claim": (("i am", "authori", "official"),),
    "restriction_removal": (("without", "anything"),),
}
# Four or more spaced single letters hold " x y " (the second and third letters); unlike
# _SPACED_LETTERS this starts with a literal, which the regex engine searches for quickly.
_SPACED_HINT: Final = re.compile(" [a-z] [a-z] ")

_DELIMITER_RULE: Final = re.compile(
    r"<\|im_start\|>\s*system|<\|system\|>|<\|(?:start_header_id|endoftext|im_end)\|>"
    r"|\[/?inst\]|<<\s*/?sys\s*>>|</?system>|(?:^|\n)\s*#{2,}\s*(?:system|instruction)s?\s*:"
)
# _SQUASHED_OVERRIDE starts with "ignore", "disregard" or "forget", which `in` finds faster than the regex.
_SQUASHED_OVERRIDE: Final = re.compile(
    r"(?:ignore|disregard|forget)(?:all|any|the|your)*(?:previous|prior|above|earlier)"
    r"(?:instructions?|rules|prompts?|directions)"
)
_BASE64_BLOB: Final = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")


def _folded(text: str) -> str:
    """NFKC, without zero-width characters, lower case; ASCII text (most prompts) is already NFKC
    and has no zero-width characters, so it skips both passes."""
    if text.isascii():
        return text.lower()
    return _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text)).lower()


def _normalise(text: str) -> str:
    return _normalise_folded(_folded(text))


def _normalise_folded(folded: str) -> str:
    text = word_spaced(folded)  # == _NON_WORD.sub(" ", folded.translate(_LEET)), several times faster
    # Join "i g n o r e" before collapsing runs of spaces, so the wider gaps
    # between letter-spaced words still separate them.
    if _SPACED_HINT.search(text):  # skips the slower regex on text that cannot match it
        text = _SPACED_LETTERS.sub(lambda m: m.group().replace(" ", ""), text)
    # After _NON_WORD the only whitespace left is " ": collapsing runs of two or more gives
    # the same text as collapsing every `\s+`, without rewriting each single space.
    return collapse_spaces(text)


def _may_fire(name: str, normalised: Container[str]) -> bool:
    groups = _WORD_RULE_LITERALS.get(name)
    if groups is None:
        return True
    for group in groups:  # plain loops: this runs on every prompt and generators cost more
        for literal in group:
            if literal in normalised:
                break
        else:
            return False
    return True


def _word_signals(normalised: str) -> list[tuple[str, float]]:
    if len(normalised) < LiteralIndex.MIN_CHARS:
        # The words rule out most rules at once; the text itself (no index) answers the literals
        # of the few left, as an index only pays for itself on long texts.
        allowed = WordGate(normalised).allowed()
        fired = [(name, weight) for name, weight, rule in _WORD_RULES
                 if name in allowed and _may_fire(name, normalised) and rule.search(normalised)]
    else:
        literals = LiteralIndex(normalised)
        fired = [(name, weight) for name, weight, rule in _WORD_RULES
                 if _may_fire(name, literals) and rule.search(normalised)]
    if not fired or fired[0][0] != "instruction_override":  # the first rule: first when it fired
        # Letter-spaced with single spaces everywhere collapses into one blob.
        squashed = normalised.replace(" ", "")
        if ("ignore" in squashed or "disregard" in squashed or "forget" in squashed) and _SQUASHED_OVERRIDE.search(
                squashed):
            fired.append(("instruction_override", 0.80))
    return fired


def _decoded_blobs(text: str) -> list[str]:
    if not may_hold_base64_blob(text):  # one C pass instead of the regex trying every word
        return []
    decoded: list[str] = []
    for match in islice(_BASE64_BLOB.finditer(text), 8):  # the first eight, without finding the rest
        blob = match.group()
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded.append(raw.decode("utf-8"))
        except (binascii.Error, ValueError):
            continue
    return decoded


_NO_SIGNAL: Final = InjectionScore(0.0, ())


def score_injection(text: str) -> InjectionScore:
    """Heuristic 0..1 likelihood that ``text`` tries to subvert the model."""
    light = _folded(text)
    fired = _word_signals(_normalise_folded(light))
    # Every delimiter form holds "<", "[" or "##": skip the regex on text without them.
    if ("<" in light or "[" in light or "##" in light) and _DELIMITER_RULE.search(light):
        fired.append(("role_delimiter", 0.60))
    for payload in _decoded_blobs(text):
        names = {name for name, _ in _word_signals(_normalise(payload))}
        if names & {"instruction_override", "system_prompt_extraction", "roleplay_jailbreak"}:
            fired.append(("encoded_override", 0.80))
            break
    if not fired:  # ordinary text: the one score it can have (immutable, so shared)
        return _NO_SIGNAL
    remaining = 1.0
    for _, weight in fired:
        remaining *= 1.0 - weight
    return InjectionScore(round(1.0 - remaining, 4), tuple(name for name, _ in fired))
