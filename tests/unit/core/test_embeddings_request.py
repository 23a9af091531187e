"""parse_embeddings_request: OpenAI's four input forms, and each invalid field as a 400 with its param."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.core.embeddings import MAX_INPUTS, parse_embeddings_request
from sidecar.core.errors import InvalidRequest


def raw(**fields: Any) -> bytes:
    return orjson.dumps({"model": "embed", "input": "hello", **fields})


def test_a_string_input() -> None:
    request = parse_embeddings_request(raw(request_id="abc", encoding_format="base64", dimensions=8, user="u1"))
    assert (request.model, request.texts, request.token_ids, request.request_id) == ("embed", ("hello",), 0, "abc")
    assert (request.stream, request.include_usage) == (False, False)


@pytest.mark.parametrize(("value", "texts", "token_ids"), [
    (["a", "b c"], ("a", "b c"), 0),
    ([1, 2, 3], (), 3),
    ([[1, 2], [3]], (), 3),
    ([0], (), 1),
])
def test_array_inputs(value: Any, texts: tuple[str, ...], token_ids: int) -> None:
    request = parse_embeddings_request(raw(input=value))
    assert (request.texts, request.token_ids) == (texts, token_ids)


def test_unknown_fields_pass_through() -> None:
    assert parse_embeddings_request(raw(future_field={"x": 1})).body["future_field"] == {"x": 1}


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"model": None}, "model", "missing_model"),
    ({"model": ""}, "model", "invalid_type"),
    ({"model": 5}, "model", "invalid_type"),
    ({"input": None}, "input", "missing_input"),
    ({"input": ""}, "input", "invalid_value"),
    ({"input": []}, "input", "invalid_type"),
    ({"input": {"text": "x"}}, "input", "invalid_type"),
    ({"input": 7}, "input", "invalid_type"),
    ({"input": ["a", ""]}, "input[1]", "invalid_value"),
    ({"input": ["a", 1]}, "input[1]", "invalid_type"),
    ({"input": [1, -2]}, "input[1]", "invalid_type"),
    ({"input": [1, True]}, "input[1]", "invalid_type"),
    ({"input": [1.5]}, "input[0]", "invalid_type"),
    ({"input": [{"a": 1}]}, "input[0]", "invalid_type"),
    ({"input": [[1], []]}, "input[1]", "invalid_type"),
    ({"input": [[1], ["a"]]}, "input[1]", "invalid_type"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, "input", "too_many_inputs"),
    ({"encoding_format": "int8"}, "encoding_format", "invalid_value"),
    ({"dimensions": 0}, "dimensions", "invalid_value"),
    ({"dimensions": "8"}, "dimensions", "invalid_value"),
    ({"dimensions": True}, "dimensions", "invalid_value"),
    ({"user": 5}, "user", "invalid_type"),
    ({"request_id": "has space"}, "request_id", "invalid_value"),
])
def test_invalid_fields_name_their_param(fields: dict[str, Any], param: str, code: str) -> None:
    body = {"model": "embed", "input": "hello", **fields}
    if fields.get("model", "") is None:
        del body["model"]
    if "input" in fields and fields["input"] is None:
        del body["input"]
    with pytest.raises(InvalidRequest) as caught:
        parse_embeddings_request(orjson.dumps(body))
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, code)


@pytest.mark.parametrize("body", [b"", b"[1]", b"{not json", b'{"model": "\xff"}'])
def test_unreadable_bodies_are_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_embeddings_request(body)
    assert caught.value.code in ("invalid_json", "invalid_encoding")
