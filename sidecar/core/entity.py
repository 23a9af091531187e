"""What a guardrail detector finds: the PII categories, and `Entity`, a categorised span of text.

Plain values (stdlib only), so the policy (a guardrail's `categories:`, a compiled pattern's
finds) and every detector, the masking and the stream scanner share them; `resolve_overlaps`
is the one rule for spans that clash.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

EMAIL = "email"
PHONE = "phone"
CREDIT_CARD = "credit_card"
SSN = "ssn"
IBAN = "iban"
IP_ADDRESS = "ip_address"
SECRET = "secret"
# Category used by the deny-pattern guardrail (see sidecar/policy/patterns.py).
PATTERN = "pattern"

ALL_CATEGORIES: frozenset[str] = frozenset(
    {EMAIL, PHONE, CREDIT_CARD, SSN, IBAN, IP_ADDRESS, SECRET}
)


class Entity(NamedTuple):
    """A detected span ``text[start:end]`` of a given category.

    A NamedTuple: immutable and hashable like a frozen dataclass, and several times cheaper to
    build (detectors and stream windows build many).
    """

    category: str
    start: int
    end: int
    # The guardrail whose detector found it, where several guardrails share one scan.
    source: str = ""

    @property
    def length(self) -> int:
        """Characters covered: `end - start`."""
        return self.end - self.start

    def shifted(self, offset: int) -> Entity:
        """Same entity moved by ``offset`` (used for window -> stream coordinates)."""
        return Entity(self.category, self.start + offset, self.end + offset, self.source)


def resolve_overlaps(entities: Iterable[Entity]) -> list[Entity]:
    """Sort by start and drop overlaps, keeping the longer entity of a clash."""
    kept: list[Entity] = []
    for entity in sorted(entities, key=lambda e: (e.start, -e.length)):
        if kept and entity.start < kept[-1].end:
            if entity.length > kept[-1].length:
                kept[-1] = entity
            continue
        kept.append(entity)
    return kept
