"""NDJSON rendering and streaming: file lines filled with signed URLs, chunked into the response.

A file's line template (:class:`~helpers.server.protocol.FileLineTemplate`) does not depend on the URL;
the renderers here fill in the URL and expiry, and keep the rendered lines of one
(snapshot, base URL, expiry, recipient) so a warm ``/query`` only joins cached strings.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from helpers.server.dv import with_signed_dv
from helpers.server.protocol import FileLineTemplate

__all__ = [
    "NDJSON",
    "RENDER_BATCH",
    "DvLineRenderer",
    "Entry",
    "EntrySet",
    "LineRenderer",
    "PresignedLineRenderer",
    "chunked",
    "ndjson_response",
    "prefetch",
]

NDJSON = "application/x-ndjson; charset=utf-8"
RENDER_BATCH = 512
"""Lines rendered per generator step (fewer round trips; the response chunks them)."""
_CHUNK_BYTES = 256 * 1024

Entry = tuple[dict[str, Any], FileLineTemplate, str, bytes]
"""A file of a snapshot: its ``add`` action, its line template and its token's path part (text, ASCII)."""


class LineRenderer:
    """Fills file line templates with signed URLs for one (table version, base URL, expiry, recipient).

    :param url_parts: (JSON text of the URL before the path part, text between it and the signature),
        from :meth:`SharingService.file_url_parts`.
    :param sign: the signature of a path part (:meth:`Signer.file_signer`).
    :param exp_text: the expiry as text.
    """

    def __init__(
        self, url_parts: tuple[str, str], sign: Callable[[bytes], str], exp_text: str
    ) -> None:
        self.head, self.tail = url_parts
        self.sign = sign
        self.exp_text = exp_text

    def batch(self, entries: list[Entry], cache: list[str | None], indexes: Iterable[int]) -> str:
        """The lines of ``entries[i]`` for ``i`` in ``indexes``, joined; rendered ones are kept in ``cache``."""
        head, tail, sign, exp = self.head, self.tail, self.sign, self.exp_text
        out: list[str] = []
        append = out.append
        for i in indexes:
            line = cache[i]
            if line is None:
                _add, t, part, raw = entries[i]
                url = f'{head}{part}{tail}{sign(raw)}"'
                if t.url_first:
                    line = f"{t.prefix}{url}{t.middle}{exp}{t.suffix}"
                else:
                    line = f"{t.prefix}{exp}{t.middle}{url}{t.suffix}"
                cache[i] = line
            append(line)
        return "".join(out)


class PresignedLineRenderer:
    """Fills file line templates with an object store's pre-signed URLs (:meth:`SharingService.presigner`).

    Nothing is cached: every response signs its URLs afresh (object-store tables in the lab are small).
    """

    def __init__(self, sign: Callable[[str], str], exp: int) -> None:
        self.sign = sign
        self.exp = exp

    def batch(self, entries: list[Entry], cache: list[str | None], indexes: Iterable[int]) -> str:
        """The lines of ``entries[i]`` for ``i`` in ``indexes``, joined (``cache`` is not used)."""
        sign, exp = self.sign, self.exp
        return "".join(entries[i][1].render(sign(entries[i][0]["path"]), exp) for i in indexes)


class DvLineRenderer:
    """Renders the delta-format lines of files with on-disk deletion vectors: each line is built afresh
    with the DV descriptor pointing at its signed URL (:mod:`helpers.server.dv`); nothing is cached.

    :param url_of: a log path (data or DV file) -> its signed URL.
    :param exp: the URLs' expiry (epoch ms).
    :param version: the version field of time-travel lines, else None.
    :param timestamp: the timestamp field of time-travel lines, else None.
    """

    def __init__(
        self,
        url_of: Callable[[str], str],
        exp: int,
        version: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        self.url_of = url_of
        self.exp = exp
        self.version = version
        self.timestamp = timestamp

    def batch(self, entries: list[Entry], cache: list[str | None], indexes: Iterable[int]) -> str:
        """The lines of ``entries[i]`` for ``i`` in ``indexes``, joined (``cache`` is not used)."""
        out = []
        for i in indexes:
            add = entries[i][0]
            action = with_signed_dv(add, self.url_of)
            tmpl = FileLineTemplate.build(
                "file", "delta", action, version=self.version, timestamp=self.timestamp
            )
            out.append(tmpl.render(self.url_of(add["path"]), self.exp))
        return "".join(out)


class EntrySet:
    """The cached file entries of one (snapshot, format, table) and their last rendered lines."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self._render_key: tuple[Any, ...] | None = None
        self._rendered: list[str | None] = []
        self._lock = threading.Lock()

    def rendered(self, key: tuple[Any, ...]) -> list[str | None]:
        """The line cache for ``key`` = (base URL, expiry, recipient); reset when the key changes."""
        with self._lock:
            if key != self._render_key:
                self._render_key = key
                self._rendered = [None] * len(self.entries)
            return self._rendered


def chunked(lines: Iterator[str]) -> Iterator[bytes]:
    """Group NDJSON lines into ~256 KiB chunks: one thread hop per chunk, not per line."""
    buf: list[str] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= _CHUNK_BYTES:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


Body = tuple[list[bytes], Iterator[bytes] | None]
"""What :func:`prefetch` read: the first chunks, and the rest to stream (None: that was all)."""


def prefetch(lines: Iterator[str]) -> Body:
    """Render ``lines`` into chunks up to the second one (call it in the thread hop that made them):
    a response of one chunk (most of them: ~256 KiB) is then answered whole, with no more hops."""
    chunks = chunked(lines)
    first = list(itertools.islice(chunks, 2))
    return first, (chunks if len(first) == 2 else None)


def ndjson_response(headers: dict[str, str], body: Body) -> Response:
    """The NDJSON response of a :func:`prefetch`: whole when it was all read, else streamed."""
    first, rest = body
    if rest is None:
        return Response(b"".join(first), media_type=NDJSON, headers=headers)
    return StreamingResponse(itertools.chain(first, rest), media_type=NDJSON, headers=headers)
