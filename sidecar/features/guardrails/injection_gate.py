"""Which injection rules can match a normalised text, decided from its set of words.

The literal pre-check (`injection._may_fire`) searches the text once per literal: on ordinary
prose no rule fires and all ~55 literals are searched for in vain, ~25 us per KB. Every word
rule starts at a word boundary and needs certain *whole words* (or words beginning a certain
way), so one split of the text into its distinct words (C speed, a few us per KB) answers most
rules with a set intersection, and only the rules the words allow go on to the literal check
and their regex, which decide exactly as before.

Words: the normalised text holds only a-z, `'` and single spaces, so a regex's `\\b` falls at a
space, an apostrophe or an end, and `\\s+` is one space; a word here is a maximal run between
spaces and apostrophes. For each rule, `GATES` lists groups that must all pass (see `Group`; a
word of fewer than four letters is its own head). Why each entry is necessary (each
alternative of the rule's regex needs one of them):

* instruction_override: the verb of every alternative (`set aside` needs "aside", `throw out`
  "throw", `do not follow` "follow").
* system_prompt_extraction: its opening verb (`reveal`, `spell out`, `what is`, `what's in`...),
  and its object (`system/initial/hidden prompt|message|instruction...`, `your rules`, `repeat
  ... above|before...`, `what were you told`).
* roleplay_jailbreak: `you are dan`, `dan mode`, `pretend ...`, `imagine/suppose/roleplay/role
  play ...`, `you are now`, `broken free`, `do anything now`, `act as`, `jailbr...`, `... you
  had no/without/zero/free of ...`, `no ethical/moral/content ...`.
* encoding_hint: the closing word (`follow`, `execute`, `obey`, `do what`, `instruction(s)`), and
  the opening one (`decod...`, `decipher...`, `base...`, `rot ie`/`rotie...`, `hex...`).
* developer_mode; authority_claim (`i am`, `authorized/authorised/official`); restriction_removal
  (`without`, `can/will/must say/generate/write anything`).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Final, NamedTuple

_HEAD: Final = itemgetter(slice(0, 4))


class Group(NamedTuple):
    """Passes when the text has one of `words`, all words of one of `combos`, a word whose first
    four letters are one of `heads`, or one of `substrings` (built by `_group`)."""

    words: frozenset[str]
    combos: tuple[frozenset[str], ...]
    combo_words: frozenset[str]  # every word of the combos: a text with none of them passes no combo
    heads: frozenset[str]
    substrings: tuple[str, ...]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split(" ")) if text else frozenset()


def _group(words: str, combos: tuple[str, ...] = (), heads: str = "", substrings: tuple[str, ...] = ()) -> Group:
    combo_sets = tuple(map(_words, combos))
    return Group(_words(words), combo_sets, frozenset().union(*combo_sets), _words(heads), substrings)


GATES: Final[dict[str, tuple[Group, ...]]] = {
    "instruction_override": (_group(
        "ignore disregard forget abandon discard neglect aside throw skip bypass override overwrite drop"
        " follow following obeying obey"),),
    "system_prompt_extraction": (
        _group("reveal print show repeat output display leak dump echo recite spell tell give write copy paste"
               " what whats"),
        _group("rules told", heads="prom mess inst abov befo")),
    "roleplay_jailbreak": (_group("dan pretend imagine suppose roleplay", substrings=("jailbr",), combos=(
        "you are now", "broken free", "do anything now", "act as", "role play", "you no", "you without", "you zero",
        "you free", "no ethical", "no moral", "no content")),),
    "developer_mode": (_group("developer"),),
    # The closing word first: prose lacks it more often than the opening one.
    "encoding_hint": (_group("follow execute obey instruction instructions", combos=("do what",)),
                      _group("rot", heads="deco deci base roti", substrings=("hex",))),
    "authority_claim": (_group("authorized authorised official", combos=("i am",)),),
    "restriction_removal": (_group("without", combos=("say anything", "generate anything", "write anything")),),
}


_GATE_ITEMS: Final = tuple(GATES.items())


class WordGate:
    """`may_fire(rule)` is False only when the rule's regex cannot match the normalised text."""

    __slots__ = ("_heads", "_text", "_words")

    def __init__(self, normalised: str) -> None:
        self._text = normalised
        self._words = set(normalised.replace("'", " ").split(" "))
        self._heads: set[str] | None = None  # built when a group first needs them (prose seldom does)

    def may_fire(self, name: str) -> bool:
        """Whether every group of rule `name`'s gate passes (True for a rule without a gate)."""
        return name not in GATES or name in self.allowed()

    def allowed(self) -> list[str]:
        """The gated rules whose every group passes, in `GATES` order."""
        words = self._words
        out = []
        # Plain loops, inlined tests and early exits: this runs on every text, and calls cost more.
        for name, groups in _GATE_ITEMS:
            for group in groups:
                if not words.isdisjoint(group.words):
                    continue
                if (group.substrings or group.heads or (group.combos and not words.isdisjoint(group.combo_words))) \
                        and self._passes_otherwise(group):
                    continue
                break
            else:
                out.append(name)
        return out

    def _passes_otherwise(self, group: Group) -> bool:
        if not self._words.isdisjoint(group.combo_words):
            for combo in group.combos:
                if combo <= self._words:
                    return True
        for substring in group.substrings:
            if substring in self._text:
                return True
        if group.heads:
            if self._heads is None:
                self._heads = set(map(_HEAD, self._words))
            return not self._heads.isdisjoint(group.heads)
        return False
