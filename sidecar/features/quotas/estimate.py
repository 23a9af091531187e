"""What a request may cost before it runs: the amount admission reserves.

No tokenizer: the prompt estimate is characters / `chars_per_token` (4 by default, OpenAI's
rule of thumb for English) over the text the model reads (every text `sidecar.core.walk`
yields for a request, names included: contents and text parts, refusals, tool call and function
call arguments and names, tool results; plus the tool and legacy function definitions and a
`response_format` JSON schema as JSON, and the `prediction` text), plus 4 tokens of framing
per message and 3 for the reply's priming, plus a flat 85 per image part (a low-detail
image's cost). The completion allowance is the
request's `max_completion_tokens`/`max_tokens`, else the per-model default in `limits.models`,
else `limits.estimate.completion_tokens`, times `n` when several choices are asked for. The
reservation is corrected with the real `usage` afterwards, so the estimate only decides
admission at the edge of a limit.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

from sidecar.core.chat import ChatRequest
from sidecar.core.embeddings import EmbeddingsRequest
from sidecar.core.endpoints import ClientRequest
from sidecar.core.limits import LimitsPolicy
from sidecar.core.walk import request_texts

_PER_MESSAGE = 4
_REPLY_PRIMING = 3
_PER_IMAGE = 85


class Estimate(NamedTuple):
    """Tokens a request may use (a NamedTuple: immutable, and cheap to build on every callout)."""

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
    # tuple.__new__: the NamedTuple without its Python-level __new__ (every callout builds one).
    return tuple.__new__(Estimate, (prompt_tokens(request.body, limits.chars_per_token), completion))


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
    messages = body.get("messages") or []
    chars = _plain_chars(messages)
    images = 0
    if chars is None:
        chars = sum(len(text.text) for text in request_texts(body, names=True, definitions=False))
        images = sum(_images(message) for message in messages if isinstance(message, dict))
    tools = body.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
    if "functions" in body or "response_format" in body or "prediction" in body:
        chars += _definition_chars(body)
    return math.ceil(chars / chars_per_token) + _PER_MESSAGE * len(messages) + _REPLY_PRIMING + _PER_IMAGE * images


def _plain_chars(messages: object) -> int | None:
    """The characters of messages that are only a role and a text: what the walker would read
    from them, without building its Texts. None when a message holds more (parts, tool calls,
    names): then the walker reads them all."""
    if not isinstance(messages, list):
        return None
    chars = 0
    for message in messages:
        if not isinstance(message, dict):
            continue  # the walker skips it too
        content = message.get("content")
        if not isinstance(content, str) or len(message) != 1 + ("role" in message):
            return None
        chars += len(content)
    return chars


def _definition_chars(body: dict[str, Any]) -> int:
    """Legacy `functions` and a `response_format` JSON schema as the JSON a provider renders into
    the prompt (their keys and types are tokens too, as for `tools`); the `prediction` text."""
    chars = 0
    response_format = body.get("response_format")
    schema = response_format.get("json_schema") if isinstance(response_format, dict) else None
    for value in (body.get("functions"), schema):
        if value:
            chars += len(orjson.dumps(value))
    if "prediction" in body:
        chars += sum(len(text.text) for text in request_texts({"prediction": body["prediction"]}))
    return chars


def completion_tokens_from_chars(chars: int, chars_per_token: float) -> int:
    return math.ceil(chars / chars_per_token)


def _images(message: dict[str, Any]) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")
