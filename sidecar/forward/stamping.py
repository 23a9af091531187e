"""Stream chunks on their way to the client: the client's model key, the role chunk, usage kept or
dropped (`ChunkStamper`), and the output guards over them (`guarded`, `flushed`).

Synchronous and per chunk: the relay (sidecar.forward.relay) does the I/O around them.
"""

from __future__ import annotations

from sidecar.core.types import JSONDict, Usage
from sidecar.core.walk import ANSWER_STRING_FIELDS, chunk_texts
from sidecar.forward.exchange import Exchange, OutputGuard
from sidecar.forward.usage import ProviderUsage

# The delta members whose string values are answer text (core.walk's), for counting it.
_TEXT_FIELDS = frozenset(field.value for field in ANSWER_STRING_FIELDS)


class ChunkStamper:
    """Gives chunks the client's model key, sends the role delta first, strips unasked usage."""

    def __init__(self, exchange: Exchange) -> None:
        self._model = exchange.decision.model_key
        self._wants_usage = exchange.decision.client_wants_usage
        self._roles_sent: set[int] = set()  # choice indexes (n > 1 streams interleave choices)
        self._reports = ProviderUsage(exchange.decision.request_id, exchange.deployment.name)
        # The last usage the provider reported, None when it reported none or it was refused.
        self.usage: Usage | None = None
        self.completion_chars = 0

    def stamp(self, chunk: JSONDict) -> list[JSONDict]:
        """`chunk` stamped (in place), after the role chunk of any choice not seen before; none for
        a usage-only chunk the client did not ask for."""
        chunk["model"] = self._model
        chunk.setdefault("object", "chat.completion.chunk")
        if "usage" in chunk:
            if chunk["usage"]:
                self.usage = self._reports.read(chunk["usage"])
                if not self._wants_usage:
                    if not chunk.get("choices"):
                        return []
                    del chunk["usage"]
            elif not self._wants_usage:
                del chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return [chunk]
        out = []
        chars, structured = 0, False
        for choice in choices:
            delta = choice.get("delta") or {}
            index = choice.get("index", 0)
            if index not in self._roles_sent:
                self._roles_sent.add(index)
                if "role" not in delta:
                    out.append(self._role_chunk(chunk, index))
            if isinstance(delta, dict):
                # What core.walk.chunk_texts yields, counted without building its Texts (every chunk);
                # a member that is not a string (tool calls, content parts, audio, reasoning items)
                # sends the chunk through the walker.
                for name, value in delta.items():
                    if isinstance(value, str):
                        if name in _TEXT_FIELDS:
                            chars += len(value)
                    elif value is not None:
                        structured = True
        if structured or not isinstance(choices, list):
            chars = sum(len(text.text) for text in chunk_texts(chunk))
        self.completion_chars += chars
        out.append(chunk)
        return out

    def _role_chunk(self, like: JSONDict, index: int) -> JSONDict:
        return {
            "id": like.get("id"), "object": "chat.completion.chunk", "created": like.get("created"),
            "model": self._model,
            "choices": [{"index": index, "delta": {"role": "assistant"}, "finish_reason": None}],
        }


def guarded(guards: list[OutputGuard], chunks: list[JSONDict]) -> list[JSONDict]:
    """`chunks` through each output guard in turn (each may hold text back or release more)."""
    for guard in guards:
        chunks = [out for chunk in chunks for out in guard.on_chunk(chunk)]
    return chunks


def flushed(guards: list[OutputGuard]) -> list[JSONDict]:
    """At the end each guard first sees what the guards before it released, then releases its own."""
    pending: list[JSONDict] = []
    for guard in guards:
        pending = [out for chunk in pending for out in guard.on_chunk(chunk)] + guard.on_end()
    return pending

