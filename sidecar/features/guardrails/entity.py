"""Shared value types for the guardrail detectors.

Kept in its own module so detectors, masking and the stream scanner can all
import it without circular imports.
"""

from __future__ import annotations

from typing import NamedTuple

EMAIL = "email"
PHONE = "phone"
CREDIT_CARD = "credit_card"
SSN = "ssn"
IBAN = "iban"
IP_ADDRESS = "ip_address"
SECRET = "secret"
# Category used by the deny-pattern guardrail (see pattern_guard.py).
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
        return self.end - self.start

    def shifted(self, offset: int) -> Entity:
        """Same entity moved by ``offset`` (used for window -> stream coordinates)."""
        return Entity(self.category, self.start + offset, self.end + offset, self.source)
