"""The demo provider's embeddings: deterministic unit vectors, float and base64, usage, dimensions."""

from __future__ import annotations

import base64
import math
import struct

from aiohttp.test_utils import TestClient, TestServer

from sidecar.devtools.demo_provider import EMBEDDING_DIMENSIONS, embedding_vector, init_demo_provider


def test_vectors_are_deterministic_unit_vectors() -> None:
    one = embedding_vector("hello", 16)
    assert one == embedding_vector("hello", 16) and one != embedding_vector("hello!", 16)
    assert len(one) == 16 and math.isclose(sum(v * v for v in one), 1.0)
    assert embedding_vector([1, 2], 4) == embedding_vector([1, 2], 4)


async def test_float_and_base64_answers_carry_the_same_vector() -> None:
    async with TestClient(TestServer(init_demo_provider())) as client:
        floats = await (await client.post("/v1/embeddings", json={"model": "m", "input": ["a b", "c"]})).json()
        b64 = await (await client.post("/v1/embeddings", json={"model": "m", "input": "a b",
                                                                "encoding_format": "base64", "dimensions": 8})).json()
        ids = await (await client.post("/v1/embeddings", json={"model": "m", "input": [5, 6, 7]})).json()
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert len(floats["data"][0]["embedding"]) == EMBEDDING_DIMENSIONS
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    decoded = struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"]))
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, embedding_vector("a b", 8), strict=True))
    assert (len(ids["data"]), ids["usage"]["prompt_tokens"]) == (1, 3)
