"""A request's `Content-Encoding`, decided from its headers before its body is read.

Envoy's decompressor filters decode a body sent with `Content-Encoding: gzip` or `br`, then drop
the header; any other coding, or a second coding, passes through with its header. The sidecar
never decodes a body itself (the app is built with aiohttp's `auto_decompress` off: aiohttp
would otherwise decode `deflate`, `zstd` or `br` while the body is read, so the callout and the
digest would see bytes other than those relayed, and a body that is not what its header says
made aiohttp raise before any check ran). So a header still naming a coding when the request
reaches the sidecar means a body the gateway will not read: 400 `unsupported_content_encoding`,
on the callout and on the forwarding path alike, without reading the body.

Envoy's header_mutation filter copies the header as the client sent it into
`x-cgt-content-encoding` before the decompressors run (a client's own `x-cgt-*` headers are
removed first), so the messages can name what the client sent: `gzip, gzip` (Envoy decoded one
layer and passed the other on) is "only a single coding is accepted", and a body Envoy could not
decode (its decompressor then passes on nothing, or what it decoded before the error, and counts
`decompressor_library.zlib_data_error` / `brotli_error`) is "could not be decoded as gzip".
"""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.core.errors import GatewayError, InvalidRequest

# Set by Envoy (sidecar/envoy/envoy.yaml.tmpl, header_mutation) to the client's Content-Encoding.
SENT_ENCODING_HEADER = "x-cgt-content-encoding"
# The codings Envoy's decompressors decode (the decompressor filters in envoy.yaml.tmpl).
DECODED_BY_ENVOY = ("gzip", "br")
ACCEPTED = "send the body uncompressed, or compressed once with gzip or br"
_SHOWN = 64  # characters of a client's header quoted in a message


def _codings(value: str | None) -> list[str]:
    """The codings a Content-Encoding value lists, lower-cased, in order (RFC 9110 8.4)."""
    if not value:
        return []
    return [coding for coding in (part.strip().lower() for part in value.split(",")) if coding]


def _shown(value: str) -> str:
    value = value.strip()
    return value if len(value) <= _SHOWN else value[:_SHOWN] + "…"


def sent_encoding(headers: Mapping[str, str]) -> str | None:
    """The Content-Encoding as the client sent it: Envoy's copy, else the header itself (a request
    that did not pass Envoy). Envoy's `%REQ()%` gives `-` or nothing for an absent header."""
    sent = headers.get(SENT_ENCODING_HEADER)
    if sent is not None and sent.strip() not in ("", "-"):
        return sent
    return headers.get("Content-Encoding")


def encoding_refusal(headers: Mapping[str, str]) -> InvalidRequest | None:
    """The 400 `unsupported_content_encoding` for a request whose body is still encoded (its
    Content-Encoding names a coding other than `identity`), or None; reads headers only."""
    remaining = [coding for coding in _codings(headers.get("Content-Encoding")) if coding != "identity"]
    if not remaining:
        return None
    sent = sent_encoding(headers) or ""
    named = f"Content-Encoding '{_shown(sent if len(_codings(sent)) > 1 else remaining[0])}'"
    if len(_codings(sent)) > 1:
        message = f"{named} lists several codings; only a single coding is accepted: {ACCEPTED}"
    elif remaining[0] in DECODED_BY_ENVOY:
        # Only when the gateway's decompressor for it is switched off (its runtime key).
        message = f"{named} is not decoded by this gateway; send the body uncompressed"
    else:
        message = f"{named} is not supported; {ACCEPTED}"
    return InvalidRequest(message, code="unsupported_content_encoding")


def decoded_coding(headers: Mapping[str, str]) -> str | None:
    """`gzip` or `br` when Envoy decoded the body from that coding (the client sent it alone, and
    no coding is left on the request), else None."""
    sent = [coding for coding in _codings(sent_encoding(headers)) if coding != "identity"]
    if len(sent) != 1 or sent[0] not in DECODED_BY_ENVOY:
        return None
    if any(coding != "identity" for coding in _codings(headers.get("Content-Encoding"))):
        return None
    return sent[0]


def undecodable(error: GatewayError, body: bytes, coding: str) -> GatewayError:
    """`error` (the body parser's 400) explained for a body Envoy decoded from `coding`: an empty
    result is 400 `content_decoding_failed` (Envoy's decoder produced nothing: the bytes were not
    `coding`), invalid JSON says the decoded body may be cut short or not `coding` at all. Any
    other error is returned as it is."""
    if error.code not in ("invalid_json", "invalid_encoding"):
        return error
    if not body.strip():
        return InvalidRequest(f"The request body could not be decoded as {coding} (its Content-Encoding): "
                              f"decoding gave nothing; {ACCEPTED}", code="content_decoding_failed")
    return InvalidRequest(f"{error.message} (after decoding the body as {coding}, its Content-Encoding: "
                          f"a body that is not {coding}, or is cut short, decodes to part of it or nothing)",
                          param=error.param, code=error.code)
