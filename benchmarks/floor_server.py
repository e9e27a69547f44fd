"""The least a Python file server can do per request: asyncio and httptools' parser, files from memory.

Not part of sharelab: ``bench_files.py`` runs it beside sharelab and nginx so that a request's cost is read
against what CPython itself costs on this machine (the event loop, the parser's callbacks, the socket
calls), not only against nginx. It serves the files under ``ROOT`` as ``/static/<path>``, read into memory
at start: ``HEAD``, ``GET`` and one ``Range: bytes=a-b``, with no signature, grant, catalog, ``stat`` or
audit row. What sharelab spends above it is the cost of what sharelab checks and records.

Run: ``python benchmarks/floor_server.py PORT ROOT`` (prints ``ready`` once listening).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes

import httptools

_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
_COMMON = b"content-type: application/octet-stream\r\naccept-ranges: bytes\r\n"


class _Floor(asyncio.Protocol):
    def __init__(self, files: dict[bytes, bytes]) -> None:
        self._files = files

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._range: bytes | None = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._transport.close()

    def on_message_begin(self) -> None:
        self._url, self._range = b"", None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"range":
            self._range = value

    def on_message_complete(self) -> None:
        body = self._files.get(unquote_to_bytes(self._url.partition(b"?")[0]))
        if body is None:
            self._transport.write(_NOT_FOUND)
        elif self._parser.get_method() == b"HEAD":
            self._transport.write(
                b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n" % (_COMMON, len(body))
            )
        elif self._range is not None:
            start, end = _span(self._range, len(body))
            self._transport.write(
                b"HTTP/1.1 206 Partial Content\r\n%scontent-range: bytes %d-%d/%d\r\n"
                b"content-length: %d\r\n\r\n%s"
                % (_COMMON, start, end - 1, len(body), end - start, body[start:end])
            )
        else:
            self._transport.write(
                b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n%s" % (_COMMON, len(body), body)
            )


def _span(header: bytes, size: int) -> tuple[int, int]:
    """``[start, end)`` of ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` (what the official client sends)."""
    first, _, last = header.partition(b"=")[2].partition(b"-")
    if not first:
        return max(0, size - int(last)), size
    return int(first), min(size, int(last) + 1) if last else size


def _load(root: Path) -> dict[bytes, bytes]:
    return {
        b"/static/" + str(p.relative_to(root)).encode(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file()
    }


async def _serve(port: int, root: Path) -> None:
    files = _load(root)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Floor(files), "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), Path(sys.argv[2])))
