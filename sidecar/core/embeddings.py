"""Parsing and validating an embeddings request body (OpenAI's `POST /embeddings`): once, in the callout.

`input` is a string, an array of strings, an array of token ids, or an array of arrays of token
ids (OpenAI's four forms), never empty; at most 2,048 inputs, as OpenAI allows. Unknown top-level
fields pass through untouched, as for chat; errors are 400 `invalid_request_error` with `param`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.core.chat import _load_json, _request_id, required_model  # the chat body's own rules
from sidecar.core.errors import InvalidRequest

MAX_INPUTS = 2048
ENCODING_FORMATS = ("float", "base64")


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A validated embeddings body. `texts` are the string inputs in order (empty for token ids);
    `token_ids` counts the ids of token-id inputs (0 for strings): the gateway cannot read those."""

    body: dict[str, Any]
    model: str
    texts: tuple[str, ...]
    token_ids: int
    request_id: str | None
    stream: bool = False
    include_usage: bool = False


def parse_embeddings_request(raw: bytes) -> EmbeddingsRequest:
    """Raises InvalidRequest (400) naming the field in `param`."""
    body = _load_json(raw)
    model = required_model(body)
    texts, token_ids = _inputs(body.get("input"))
    _check_options(body)
    return EmbeddingsRequest(body=body, model=model, texts=texts, token_ids=token_ids, request_id=_request_id(body))


def _inputs(value: object) -> tuple[tuple[str, ...], int]:
    if value is None:
        raise InvalidRequest("'input' is required", param="input", code="missing_input")
    if isinstance(value, str):
        _non_empty_text(value, "input")
        return (value,), 0
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'input' must be a non-empty string or a non-empty array of strings or token ids",
                             param="input", code="invalid_type")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} items", param="input", code="too_many_inputs")
    if all(isinstance(item, str) for item in value):
        for index, item in enumerate(value):
            _non_empty_text(item, f"input[{index}]")
        return tuple(value), 0
    if all(_is_token_id(item) for item in value):
        return (), len(value)
    if all(isinstance(item, list) for item in value):
        for index, item in enumerate(value):
            if not item or not all(_is_token_id(t) for t in item):
                raise InvalidRequest(f"'input[{index}]' must be a non-empty array of token ids (integers >= 0)",
                                     param=f"input[{index}]", code="invalid_type")
        return (), sum(len(item) for item in value)
    forms = [_form(item) for item in value]
    index = next(i for i, form in enumerate(forms) if form is None or form != forms[0])
    raise InvalidRequest(f"'input[{index}]' must be like the other items: all strings, all token ids (integers "
                         ">= 0) or all arrays of token ids", param=f"input[{index}]", code="invalid_type")


def _form(item: object) -> str | None:
    if isinstance(item, str):
        return "text"
    if _is_token_id(item):
        return "token_id"
    return "token_ids" if isinstance(item, list) else None


def _non_empty_text(value: str, where: str) -> None:
    if not value:
        raise InvalidRequest(f"'{where}' must not be an empty string", param=where, code="invalid_value")


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_options(body: dict[str, Any]) -> None:
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format",
                             code="invalid_value")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise InvalidRequest("'dimensions' must be a positive integer", param="dimensions", code="invalid_value")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string", param="user", code="invalid_type")
