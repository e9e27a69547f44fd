"""NDJSON bodies (helpers.server.ndjson.prefetch): whole when small, streamed lazily when big."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from starlette.responses import StreamingResponse

from helpers.server.ndjson import ndjson_response, prefetch


def _lines(n: int, made: list[int]) -> Iterator[str]:
    for i in range(n):
        made.append(i)
        yield f'{{"file":{{"id":"{i:06d}","pad":"{"x" * 1000}"}}}}\n'


def _body(response: object) -> bytes:
    async def collect() -> bytes:
        out: list[bytes] = []

        async def receive() -> dict[str, object]:
            # the client never goes away (this is cancelled once the body is sent)
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body":
                out.append(message.get("body", b""))  # type: ignore[arg-type]

        await response({"type": "http", "method": "POST", "headers": []}, receive, send)  # type: ignore[operator]
        return b"".join(out)

    return asyncio.run(collect())


def test_a_small_answer_is_sent_whole_with_its_length() -> None:
    made: list[int] = []
    response = ndjson_response({"Delta-Table-Version": "1"}, prefetch(_lines(20, made)))
    assert not isinstance(response, StreamingResponse)
    body = _body(response)
    assert response.headers["content-length"] == str(len(body))
    assert body.count(b"\n") == 20 and len(made) == 20


def test_a_big_answer_streams_and_is_read_no_further_than_two_chunks_first() -> None:
    made: list[int] = []
    body = prefetch(_lines(2000, made))  # about 2 MB of lines
    assert 400 < len(made) < 700  # two ~256 KiB chunks read ahead, not the whole answer
    response = ndjson_response({}, body)
    assert isinstance(response, StreamingResponse)
    assert "content-length" not in response.headers
    data = _body(response)
    assert data.count(b"\n") == 2000 and len(made) == 2000
    assert data.splitlines()[1999].startswith(b'{"file":{"id":"001999"')
