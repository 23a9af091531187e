"""One detection pass for several guardrails over one text (a normalised view, see view.py).

PII detection runs once with the union of the guardrails' categories and each guardrail keeps
the findings in its own categories; each pattern guardrail's matcher runs once. Every entity
carries the key of the guardrail it belongs to in `Entity.source` (one value found by two
guardrails is two entities).
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.core.entity import Entity
from sidecar.features.guardrails.pii import NumericMemo, find_entities
from sidecar.policy.guardrails import Guardrail, GuardrailType


class Finder:
    """Callable `text -> entities` (sorted by start; may overlap across guardrails)."""

    def __init__(self, guardrails: Sequence[Guardrail]) -> None:
        # Built per request: a plain loop, the cheapest way for the usual one or two guardrails.
        kept: list[Guardrail] = []
        categories: frozenset[str] = frozenset()
        for guardrail in guardrails:
            if guardrail.type is GuardrailType.PII:
                kept.append(guardrail)
                categories = categories | guardrail.categories if categories else guardrail.categories
            elif guardrail.type is GuardrailType.PATTERN:
                kept.append(guardrail)
        self._guardrails = tuple(kept)
        self._categories = categories
        self._only = kept[0].key if len(kept) == 1 else ""
        self._pii_only = all(guardrail.type is GuardrailType.PII for guardrail in kept)
        self._matchers = tuple(g.matcher for g in kept if g.type is GuardrailType.PATTERN and g.matcher is not None)
        # A stream's windows overlap: each digit run is validated once per exchange, not per chunk.
        self._memo: NumericMemo = {}

    def pii(self, text: str) -> list[Entity]:
        """The union scan alone (input checks share it between guardrails)."""
        return find_entities(text, self._categories, self._memo) if self._categories else []

    def __call__(self, text: str) -> list[Entity]:
        pii = self.pii(text)
        if not pii and self._pii_only:  # nothing found and no pattern guardrail to run: every chunk of prose
            return []
        return self.tagged(text, pii)

    @property
    def has_patterns(self) -> bool:
        """Whether a pattern guardrail is among these (only its values can be longer than a window)."""
        return bool(self._matchers)

    def open_at(self, text: str) -> int:
        """The earliest offset of `text` where a pattern guardrail's deny match may have begun that
        more text could complete (`PatternMatcher.open_at`); `len(text)` when there is none."""
        return min((matcher.open_at(text) for matcher in self._matchers), default=len(text))

    def source(self, entity: Entity) -> str:
        """The key of the guardrail an entity belongs to."""
        return entity.source or self._only

    def tagged(self, text: str, pii: list[Entity]) -> list[Entity]:
        if self._only:  # one guardrail (the usual case): its findings as they are, `source` says whose
            return entities_of(self._guardrails[0], text, pii)
        out: list[Entity] = []
        for guardrail in self._guardrails:
            out.extend(e._replace(source=guardrail.key) for e in entities_of(guardrail, text, pii))
        return sorted(out, key=lambda e: e.start)


def entities_of(guardrail: Guardrail, text: str, pii: list[Entity]) -> list[Entity]:
    """A pii or pattern guardrail's own findings in `text`, given the union PII scan of it."""
    if guardrail.type is GuardrailType.PII:
        categories = guardrail.categories
        return [e for e in pii if e.category in categories]
    assert guardrail.matcher is not None
    return guardrail.matcher.find(text)
