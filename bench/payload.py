"""The benchmark's requests: a 1 KB chat completion of plain prose (nothing a guardrail flags)."""

from __future__ import annotations

import json

from sidecar.cli.main import DEMO_TOKEN

__all__ = ["BODY_BYTES", "DEMO_TOKEN", "chat_body", "headers", "prose", "slow_stream_body"]

BODY_BYTES = 1024
_PROSE = ("The committee reviewed the quarterly weather summary and agreed that the spring rains "
          "arrived earlier than usual across the northern valleys, while the coastal towns saw "
          "long dry spells followed by mild evenings. ")


def chat_body(stream: bool = False, size: int = BODY_BYTES, prefix: str = "") -> bytes:
    """A chat request of exactly `size` bytes (padded prose), optionally streamed."""
    def encode(text: str) -> bytes:
        body: dict[str, object] = {
            "model": "gpt-4",
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": text},
            ],
        }
        if stream:
            body["stream"] = True
        return json.dumps(body, separators=(",", ":")).encode()

    empty = len(encode(prefix))
    if empty > size:
        return encode(prefix)
    need = size - empty
    text = prefix + (_PROSE * (need // len(_PROSE) + 1))[:need]
    return encode(text)


def prose(size: int) -> str:
    """`size` characters of the benchmark's plain prose."""
    return (_PROSE * (size // len(_PROSE) + 1))[:size]


def slow_stream_body(words: int) -> bytes:
    """A stream the demo provider sends a word at a time, every 0.2 s (its `slow:` prefix)."""
    return chat_body(stream=True, size=0, prefix="slow: " + " ".join(["word"] * words))


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {DEMO_TOKEN}", "Content-Type": "application/json"}
