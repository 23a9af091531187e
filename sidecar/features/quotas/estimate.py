"""What a request may cost before it runs: the amount admission reserves.

No tokenizer: the prompt estimate is characters / `chars_per_token` (4 by default, OpenAI's
rule of thumb for English) over the text the model reads (message contents, names, tool call
arguments, tool definitions), plus 4 tokens of framing per message and 3 for the reply's priming,
plus a flat 85 per image part (a low-detail image's cost). The completion allowance is the
request's `max_completion_tokens`/`max_tokens`, else the per-model default in `limits.models`,
else `limits.estimate.completion_tokens`, times `n` when several choices are asked for. The
reservation is corrected with the real `usage` afterwards, so the estimate only decides
admission at the edge of a limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.core.chat import ChatRequest
from sidecar.core.embeddings import EmbeddingsRequest
from sidecar.core.endpoints import ClientRequest
from sidecar.features.quotas.limits import LimitsPolicy

_PER_MESSAGE = 4
_REPLY_PRIMING = 3
_PER_IMAGE = 85


@dataclass(frozen=True)
class Estimate:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_request(request: ChatRequest, model: str, limits: LimitsPolicy) -> Estimate:
    completion = request.max_tokens or limits.default_completion_tokens(model)
    choices = request.body.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        completion *= choices  # each of the n choices may use the whole allowance
    return Estimate(prompt_tokens(request.body, limits.chars_per_token), completion)


def estimate_for(request: ClientRequest, model: str, limits: LimitsPolicy) -> Estimate:
    """The estimate of a chat or an embeddings request."""
    if isinstance(request, EmbeddingsRequest):
        return estimate_embeddings(request, limits)
    assert isinstance(request, ChatRequest)
    return estimate_request(request, model, limits)


def estimate_embeddings(request: EmbeddingsRequest, limits: LimitsPolicy) -> Estimate:
    """Embeddings read their input and write no tokens: characters / `chars_per_token` of each
    string (at least 1 per input), or the number of token ids as given; no completion allowance."""
    text_tokens = sum(max(1, math.ceil(len(text) / limits.chars_per_token)) for text in request.texts)
    return Estimate(text_tokens + request.token_ids, 0)


def prompt_tokens(body: dict[str, Any], chars_per_token: float) -> int:
    chars, images = 0, 0
    messages = body.get("messages") or []
    for message in messages:
        if not isinstance(message, dict):
            continue
        text, image_count = _message_text(message)
        chars += len(text)
        images += image_count
    tools = body.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
    return math.ceil(chars / chars_per_token) + _PER_MESSAGE * len(messages) + _REPLY_PRIMING + _PER_IMAGE * images


def completion_tokens_from_chars(chars: int, chars_per_token: float) -> int:
    return math.ceil(chars / chars_per_token)


def _message_text(message: dict[str, Any]) -> tuple[str, int]:
    pieces: list[str] = []
    images = 0
    content = message.get("content")
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif part.get("type") == "image_url":
                images += 1
    if isinstance(message.get("name"), str):
        pieces.append(message["name"])
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            pieces.extend(str(function.get(k) or "") for k in ("name", "arguments"))
    return "".join(pieces), images
