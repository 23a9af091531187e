"""Wire types shared by the hops and the providers: JSON objects, SSE events, token usage.

The field names are OpenAI's (Chat Completions API reference: `usage.prompt_tokens`,
`usage.completion_tokens`); SSE events follow the WHATWG server-sent events format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]
"""A decoded JSON object (orjson/json `loads` of an object)."""


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event as received from the provider (`event:` name, joined `data:` lines)."""

    data: str
    event: str | None = None


@dataclass(frozen=True)
class Usage:
    """Token usage of one completion, in OpenAI's field names."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """prompt_tokens + completion_tokens, as OpenAI's `usage.total_tokens`."""
        return self.prompt_tokens + self.completion_tokens
