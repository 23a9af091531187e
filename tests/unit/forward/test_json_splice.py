"""member_span and the spliced embeddings answer: the same result as a whole parse, or a fallback."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from sidecar.core.errors import ProviderError
from sidecar.forward import embeddings
from sidecar.forward.embeddings import stamped_answer
from sidecar.forward.json_splice import member_span
from sidecar.forward.usage import ProviderUsage


def span_text(payload: bytes, key: str = "data") -> bytes | None:
    span = member_span(payload, key)
    return None if span is None else payload[span[0]:span[1]]


@pytest.mark.parametrize(("payload", "expected"), [
    (b'{"data": [1, 2.5e-3, -3]}', b"[1, 2.5e-3, -3]"),
    (b'{"object":"list","data":[{"embedding":[0.1,0.2],"index":0}],"model":"m"}',
     b'[{"embedding":[0.1,0.2],"index":0}]'),
    (b'{"x": {"data": [9]}, "data" : [ {"a": "b]\\"}"} ] }', b'[ {"a": "b]\\"}"} ]'),
    (b'{"object": "data", "data": []}', b"[]"),
    (b'{"k\\"data": 1, "data": [[1], [2, [3]]]}', b"[[1], [2, [3]]]"),
    (b'\n {"data":\n{"nested": [1]}}', b'{"nested": [1]}'),
    (b'{"data": "not a container"}', None),
    (b'{"data": 5}', None),
    (b'{"other": [1]}', None),
    (b'[{"data": [1]}]', None),
    (b'{"data": [1, 2', None),
    (b'{"data": "unclosed', None),
    (b'', None),
])
def test_member_span(payload: bytes, expected: bytes | None) -> None:
    assert span_text(payload) == expected


def answer(encoding: str, count: int = 40, dimensions: int = 2000) -> bytes:
    def vector(i: int) -> list[float]:
        return [((i * 7 + j) % 13) / 13 - 0.5 for j in range(dimensions)]

    data = [{"object": "embedding", "index": i,
             "embedding": vector(i) if encoding == "float"
             else base64.b64encode(struct.pack(f"<{dimensions}f", *vector(i))).decode()} for i in range(count)]
    return orjson.dumps({"object": "list", "data": data, "model": "up-model",
                         "usage": {"prompt_tokens": 11, "total_tokens": 11}, "x-extra": {"k": "v"}})


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_a_big_answer_is_spliced_and_equals_the_whole_parse(encoding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = answer(encoding)
    assert len(payload) > embeddings.SPLICE_OVER
    calls: list[bytes] = []

    def counted(raw: bytes) -> Any:
        calls.append(raw)
        return orjson.loads(raw)

    monkeypatch.setattr(embeddings, "embeddings_answer", counted)
    body, usage = stamped_answer(payload, "client-key", "req_1", ProviderUsage("req_1", "d"))
    assert calls == []  # the vectors were not parsed
    expected = orjson.loads(payload)
    expected.update(model="client-key", request_id="req_1")
    assert orjson.loads(body) == expected
    assert usage is not None and usage.prompt_tokens == 11


def test_small_answers_take_the_whole_parse() -> None:
    payload = answer("float", count=2, dimensions=4)
    body, usage = stamped_answer(payload, "k", "r", ProviderUsage("r", "d"))
    assert orjson.loads(body)["model"] == "k" and usage is not None


@pytest.mark.parametrize("payload", [
    b'{"data": [' + b'{"vector": [1]},' * 30000 + b'{"vector": [1]}]}',   # not embedding objects
    b'{"data": [' + b'{"embedding": [1]},' * 20000 + b'{"embedding": [1]}], "broken": }',
])
def test_big_answers_that_do_not_fit_fall_back_to_the_whole_parse(payload: bytes) -> None:
    assert len(payload) > embeddings.SPLICE_OVER
    with pytest.raises(ProviderError) as caught:
        stamped_answer(payload, "k", "r", ProviderUsage("r", "d"))
    assert caught.value.code == "bad_provider_response"


def test_a_member_given_twice_is_decided_by_the_whole_parse() -> None:
    payload = b'{"data": [' + b'1,' * 200000 + b'1], "data": [{"embedding": [0.5]}]}'
    body, _ = stamped_answer(payload, "k", "r", ProviderUsage("r", "d"))
    assert orjson.loads(body) == {"data": [{"embedding": [0.5]}], "model": "k", "request_id": "r"}  # JSON: the last wins
