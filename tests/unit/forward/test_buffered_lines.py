"""BufferedLines: the provider stream split into lines a chunk at a time, exactly as readline() would."""

from __future__ import annotations

import pytest

from sidecar.core.errors import ProviderError
from sidecar.forward.sse import BufferedLines, EventParser, read_events


class Chunks:
    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)
        self.reads = 0

    async def readany(self) -> bytes:
        self.reads += 1
        return self._chunks.pop(0) if self._chunks else b""


async def all_lines(source: BufferedLines) -> list[bytes]:
    lines = []
    while line := await source.readline():
        lines.append(line)
    return lines


async def test_lines_split_across_and_within_chunks() -> None:
    source = Chunks(b"data: a\n\nda", b"ta: b\r\n", b"\n: ping\n\ndata: [DONE]\n\n")
    lines = await all_lines(BufferedLines(source))
    assert lines == [b"data: a\n", b"\n", b"data: b\r\n", b"\n", b": ping\n", b"\n", b"data: [DONE]\n", b"\n"]
    assert source.reads == 4  # three chunks and the end, not one read per line


async def test_an_unterminated_last_line_is_returned_before_the_end() -> None:
    assert await all_lines(BufferedLines(Chunks(b"data: x\n", b"data: tail"))) == [b"data: x\n", b"data: tail"]


async def test_events_read_through_buffered_lines() -> None:
    source = Chunks(b'data: {"a":1}\n\nevent: e\ndata: 2\n', b"data: 3\n\n", b"data: [DONE]\n\n")
    events = [(e.data, e.event) async for e in read_events(BufferedLines(source))]
    assert events == [('{"a":1}', None), ("2\n3", "e"), ("[DONE]", None)]


@pytest.mark.parametrize("chunks", [
    (b"data: " + b"x" * 200,),  # one unterminated line over the limit
    (b"data: " + b"x" * 90, b"x" * 90 + b"\n"),  # a line that grows over the limit across chunks
    (b"data: ok\n" + b"y" * 150 + b"\n",),  # a complete over-long line inside one big chunk
])
async def test_an_oversized_line_is_a_bad_provider_stream(chunks: tuple[bytes, ...]) -> None:
    with pytest.raises(ProviderError) as caught:
        _ = [e async for e in read_events(BufferedLines(Chunks(*chunks), max_line=128))]
    assert (caught.value.status, caught.value.code) == (502, "bad_provider_stream")


async def test_read_lines_hands_over_every_complete_line_of_a_read() -> None:
    source = Chunks(b"data: a\n\nda", b"ta: b\r\n", b"\n: ping\n\ndata: [DONE]\n\ntail")
    lines = BufferedLines(source)
    batches = []
    while batch := await lines.read_lines():
        batches.append(batch)
    assert batches == [[b"data: a", b""], [b"data: b\r"], [b"", b": ping", b"", b"data: [DONE]", b""], [b"tail"]]
    assert source.reads == 5  # one per chunk; the end read twice: the unterminated line, then []


async def test_read_lines_waits_for_a_whole_line_and_checks_lengths() -> None:
    assert await BufferedLines(Chunks(b"da", b"ta", b": x\n")).read_lines() == [b"data: x"]
    with pytest.raises(ValueError):
        await BufferedLines(Chunks(b"data: " + b"x" * 90, b"x" * 90 + b"\n"), max_line=128).read_lines()


@pytest.mark.parametrize("raw", [
    b'data: {"a":1}\n\nevent: e\ndata: 2\ndata:3\n\n: comment\nid: 7\ndata:  two\r\n\r\n',
    b"data: caf\xe9\n\nevent: lonely\n\n\ndata: last",
])
async def test_event_parser_on_batches_matches_read_events_line_by_line(raw: bytes) -> None:
    expected = [e async for e in read_events(BufferedLines(Chunks(raw)))]
    for cut in range(1, len(raw)):
        lines, parser, events = BufferedLines(Chunks(raw[:cut], raw[cut:])), EventParser(), []
        while batch := await lines.read_lines():
            events += parser.feed(batch)
        assert events + parser.end() == expected, cut
