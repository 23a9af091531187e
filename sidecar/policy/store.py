"""Holds the current policy snapshot; a reload swaps it in one assignment.

Recent snapshots stay reachable by version, so a request decided on one snapshot is forwarded
on that same snapshot even if a reload lands between the callout and the forwarding call.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from sidecar.policy.snapshot import Policy

_KEEP_VERSIONS = 8


class PolicyStore:
    """The serving policy, and the 8 most recent ones by version (a decision names the one it was made under)."""

    def __init__(self, initial: Policy) -> None:
        self._current = initial
        self.loaded_at = time.time()  # when the serving snapshot was swapped in (epoch seconds)
        self._recent: OrderedDict[str, Policy] = OrderedDict({initial.version: initial})

    @property
    def current(self) -> Policy:
        """The policy new requests are decided under."""
        return self._current

    def swap(self, policy: Policy) -> None:
        """Makes `policy` current (atomic for readers: one attribute assignment)."""
        self._recent[policy.version] = policy
        self._recent.move_to_end(policy.version)
        while len(self._recent) > _KEEP_VERSIONS:
            self._recent.popitem(last=False)
        self._current = policy
        self.loaded_at = time.time()

    def get(self, version: str) -> Policy | None:
        """The snapshot of that version, or None if this process never loaded it or dropped it
        (a decision is never applied under a policy other than the one it was made on)."""
        return self._recent.get(version)
