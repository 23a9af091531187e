"""The decisions this process signed recently, so the forwarding path need not decode its own.

Envoy routes an allowed request back to the sidecar a moment after the callout answered, most
often to the same process. Decoding the signed header (base64, HMAC, JSON, the dataclass) cost
~17 µs per request; looking up the exact header string this process produced costs a dict
lookup. Only an identical string matches, so a match is exactly the header the callout signed:
nothing is trusted that decoding would not have trusted. A miss (another worker process signed
it, the entry was evicted, or the forward is a replay of a header already taken) falls back to
`handoff.decode`, and everything after it (body digest, expiry, the single claim of the quota
reservation) is checked as before either way.

Bounded: entries leave when the forward takes them, and the oldest go once there are more than
`capacity` or they are past their expiry (a decision Envoy never routed: the client left).
"""

from __future__ import annotations

import time

from sidecar.callout.handoff import Decision, DecisionSigner, decode

DEFAULT_CAPACITY = 4096


class RecentDecisions:
    """Header string -> the Decision it encodes, for decisions this process signed (see module doc)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._by_header: dict[str, Decision] = {}  # insertion order = signing order

    def __len__(self) -> int:
        return len(self._by_header)

    def remember(self, header: str, decision: Decision, now: float | None = None) -> None:
        """Keeps `decision` under the exact `header` string the callout answered with."""
        entries = self._by_header
        entries[header] = decision
        now = time.time() if now is None else now
        while entries:
            oldest = next(iter(entries))
            if len(entries) <= self.capacity and entries[oldest].expires_at >= now:
                break
            del entries[oldest]

    def take(self, header: str | None, key: bytes | DecisionSigner) -> Decision:
        """The decision in `header`: this process's own (removed, so a replay decodes and meets the
        single-claim check), else decoded; raises InvalidDecision if missing or not signed by `key`."""
        decision = self._by_header.pop(header, None) if header else None
        return decision if decision is not None else decode(header, key)
