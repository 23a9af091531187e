"""Request Content-Encoding: every coding left on a request that reaches the sidecar is a JSON 400
`unsupported_content_encoding`, decided from the headers before the body is read (the sidecar
never decodes a body itself), on the callout and the forwarding path, chat and embeddings; a body
Envoy could not decode, and a second coding, are said as such (in-process app, provider mocked)."""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from sidecar.appkeys import SETTINGS
from sidecar.callout.encoding import SENT_ENCODING_HEADER, decoded_coding, encoding_refusal, undecodable
from sidecar.callout.endpoint import AUTHZ_PREFIX
from sidecar.callout.handoff import DECISION_HEADER
from sidecar.core.endpoints import CHAT_PATH, EMBEDDINGS_PATH
from sidecar.core.errors import InvalidRequest
from tests.unit.forward.test_forward_refusals import signed
from tests.unit.forward.test_forwarding_provider_client import (
    TOKEN,
    chat_body,
    client,
    error_of,
    policy_dir,
    provider,
    upstream_calls,
)

__all__ = ["client", "policy_dir", "provider"]  # the shared fixtures, used by name

PLAIN = orjson.dumps(chat_body())
# What each coding's header came with: a body that is not that coding, and one that is.
BODIES = {
    "deflate": (PLAIN, zlib.compress(PLAIN)),
    "zstd": (PLAIN, PLAIN),
    "compress": (PLAIN, PLAIN),
    "x-custom": (PLAIN, PLAIN),
}


def _headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req_unit_1", **extra}


def _assert_no_error_logs(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert loud == [], [r.getMessage() for r in loud]


@pytest.mark.parametrize("path", [CHAT_PATH, EMBEDDINGS_PATH])
@pytest.mark.parametrize("coding", sorted(BODIES))
async def test_the_callout_refuses_any_coding_from_the_header(client: TestClient[Any, Any], coding: str, path: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    for body in BODIES[coding]:
        response = await client.post(AUTHZ_PREFIX + path, data=body, headers=_headers(**{"Content-Encoding": coding}))
        error = await error_of(response, 400)
        assert error == {"message": f"Content-Encoding '{coding}' is not supported; send the body uncompressed, "
                                    "or compressed once with gzip or br",
                         "type": "invalid_request_error", "code": "unsupported_content_encoding", "param": None}
        assert DECISION_HEADER not in response.headers
    _assert_no_error_logs(caplog)


@pytest.mark.parametrize("coding", ["deflate", "zstd", "x-custom"])
async def test_the_forwarding_path_refuses_any_coding_before_reading(client: TestClient[Any, Any], coding: str,
                                                                     provider: aioresponses,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    response = await client.post(CHAT_PATH, data=PLAIN, headers={DECISION_HEADER: signed(client, PLAIN),
                                                                 "X-Request-Id": "req_unit_1",
                                                                 "Content-Encoding": coding})
    error = await error_of(response, 400)
    assert error["code"] == "unsupported_content_encoding"
    assert error["message"].endswith("send the body uncompressed, or compressed once with gzip or br")
    assert upstream_calls(provider) == []
    _assert_no_error_logs(caplog)


async def test_identity_is_no_coding(client: TestClient[Any, Any]) -> None:
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=PLAIN, headers=_headers(**{"Content-Encoding": "identity"}))
    assert response.status == 200, await response.text()
    assert DECISION_HEADER in response.headers


async def test_a_second_coding_is_named_as_such(client: TestClient[Any, Any]) -> None:
    # Envoy decoded one layer of `gzip, gzip` and passed the other on; it copied the client's header.
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=gzip.compress(PLAIN),
                                 headers=_headers(**{"Content-Encoding": "gzip", SENT_ENCODING_HEADER: "gzip, gzip"}))
    error = await error_of(response, 400)
    assert error["code"] == "unsupported_content_encoding"
    assert error["message"] == ("Content-Encoding 'gzip, gzip' lists several codings; only a single coding is "
                                "accepted: send the body uncompressed, or compressed once with gzip or br")


async def test_a_body_envoy_could_not_decode_is_said_so(client: TestClient[Any, Any]) -> None:
    # Envoy's gzip decoder gives nothing for bytes that are not gzip, and drops the header.
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=b"", headers=_headers(**{SENT_ENCODING_HEADER: "gzip"}))
    error = await error_of(response, 400)
    assert error == {"message": "The request body could not be decoded as gzip (its Content-Encoding): decoding gave "
                                "nothing; send the body uncompressed, or compressed once with gzip or br",
                     "type": "invalid_request_error", "code": "content_decoding_failed", "param": None}
    # Without a coding sent, an empty body stays the parser's own 400.
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=b"", headers=_headers(**{SENT_ENCODING_HEADER: "-"}))
    assert (await error_of(response, 400))["message"] == "The request body is empty; send a JSON object"


async def test_a_token_is_still_checked_before_the_body(client: TestClient[Any, Any]) -> None:
    response = await client.post(AUTHZ_PREFIX + CHAT_PATH, data=b"",
                                 headers={"X-Request-Id": "req_unit_1", SENT_ENCODING_HEADER: "br"})
    assert (await error_of(response, 401))["code"] == "missing_api_key"


@pytest.mark.parametrize(("content_encoding", "sent", "message"), [
    (None, None, None),
    ("identity", None, None),
    ("IDENTITY , identity", None, None),
    ("Deflate", None, "Content-Encoding 'deflate' is not supported"),
    ("gzip", "gzip, gzip", "Content-Encoding 'gzip, gzip' lists several codings"),
    ("identity, gzip", "identity, gzip", "Content-Encoding 'identity, gzip' lists several codings"),
    ("br", "br", "Content-Encoding 'br' is not decoded by this gateway; send the body uncompressed"),
    ("zstd", "-", "Content-Encoding 'zstd' is not supported"),
    ("x" * 100, None, "Content-Encoding '" + "x" * 64 + "…' is not supported"),
])
def test_encoding_refusal(content_encoding: str | None, sent: str | None, message: str | None) -> None:
    headers = {k: v for k, v in (("Content-Encoding", content_encoding), (SENT_ENCODING_HEADER, sent)) if v is not None}
    refusal = encoding_refusal(headers)
    if message is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.code == "unsupported_content_encoding"
        assert refusal.message.startswith(message)


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({SENT_ENCODING_HEADER: "-"}, None),
    ({SENT_ENCODING_HEADER: "GZIP"}, "gzip"),
    ({SENT_ENCODING_HEADER: "br"}, "br"),
    ({SENT_ENCODING_HEADER: "gzip, identity", "Content-Encoding": "identity"}, "gzip"),
    ({SENT_ENCODING_HEADER: "gzip, gzip", "Content-Encoding": "gzip"}, None),
    ({SENT_ENCODING_HEADER: "deflate", "Content-Encoding": "deflate"}, None),
])
def test_decoded_coding(headers: dict[str, str], expected: str | None) -> None:
    assert decoded_coding(headers) == expected


def test_undecodable_keeps_other_errors_and_explains_invalid_json() -> None:
    other = InvalidRequest("'model' is required", param="model", code="missing_model")
    assert undecodable(other, b"", "gzip") is other
    cut = undecodable(InvalidRequest("The request body is not valid JSON: x", code="invalid_json"), b'{"mo', "br")
    assert cut.code == "invalid_json"
    assert cut.message.startswith("The request body is not valid JSON: x (after decoding the body as br")


async def test_the_refusal_comes_before_the_body_is_read(client: TestClient[Any, Any]) -> None:
    # Larger than the sidecar reads (max_body_bytes + 1 KiB): reading it would be a 413.
    oversized = b"x" * (client.app[SETTINGS].max_body_bytes + 4096)
    response = await client.post(AUTHZ_PREFIX + EMBEDDINGS_PATH, data=io.BytesIO(oversized),
                                 headers=_headers(**{"Content-Encoding": "deflate"}))
    assert (await error_of(response, 400))["code"] == "unsupported_content_encoding"
