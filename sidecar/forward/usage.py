"""Reading the usage a provider reports for one exchange (chat, streamed or whole, and embeddings).

The counts are checked by core's one rule (`sidecar.core.usage.checked_usage`); a refused report
counts as no report, so the quota settlement uses the estimate, and the metrics and the status
page never see it. The refusal is logged once per exchange at warning, with the request id: a
stream may repeat a bad usage object on every chunk.
"""

from __future__ import annotations

import logging
from typing import Any

from sidecar.core.types import Usage
from sidecar.core.usage import UsageRefused, checked_usage

log = logging.getLogger("sidecar.usage")


class ProviderUsage:
    """The usage reports of one exchange (`request_id`, `deployment` for the log line)."""

    def __init__(self, request_id: str, deployment: str) -> None:
        self._request_id = request_id
        self._deployment = deployment
        self.refused = False

    def read(self, value: Any, *, completion: bool = True) -> Usage | None:
        """`value` (a provider's `usage`) as Usage; None when absent or refused (see the module doc).
        `completion=False` for embeddings (no completion tokens)."""
        try:
            return checked_usage(value, completion=completion)
        except UsageRefused as refused:
            if not self.refused:
                self.refused = True
                log.warning("provider usage refused; settled by estimate", extra={"fields": {
                    "request_id": self._request_id, "deployment": self._deployment, "reason": str(refused)}})
            return None
