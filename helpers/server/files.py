"""The signed file download route (``GET``/``HEAD /files/<token>``), at a static file server's cost.

The official client makes about 11 requests per file (HEADs, 64 KiB footer reads, GETs without a Range
that it abandons after the headers), so what one request costs matters more than the stream's speed:

- **the checks once per URL**: the signature, the access stamp (revocation), the file of the version and
  the IP access list run together in one catalog read transaction (:func:`_resolve`), and the answer is
  remembered while the catalog's access generation holds (:mod:`helpers.server.grantcache`): the
  client's next requests for the same URL cost one one-row catalog read, and a revocation through any
  process or replica is seen at the very next request;
- **at most one thread hop** before the answer: when the generation costs no round trip (a SQLite
  catalog, or a watched PostgreSQL one: :mod:`helpers.catalog.watch`) a remembered grant is answered on
  the event loop (the generation, ``stat``, and one ``os.pread`` of a range of at most
  :data:`INLINE_RANGE` bytes or of a whole file that small); otherwise the checks (or the generation's
  round trip), ``stat`` and a range of at most :data:`SMALL_RANGE` bytes run in one call on the thread
  pool (:func:`_grant`); a ``HEAD`` never opens the file;
- **no read-ahead for a client that is gone**: a full ``GET`` streams with ``os.pread`` chunks that start
  at 64 KiB and double up to 1 MiB (2 MiB after the first 8 MiB), each read only once the previous one
  was handed to the connection, and stops at the first ``http.disconnect`` (a client that reads the
  headers and closes costs about one small chunk, not the file);
- behind nginx (:func:`helpers.server.cluster.accel_redirect_path`) the answer is an ``X-Accel-Redirect``
  and nginx streams the file; uvicorn offers no zero-copy (``pathsend``) extension, so without a proxy the
  bytes go through the event loop as above.

Anything unusual (several ranges, ``If-Range``, a malformed or unsatisfiable range) is left to
Starlette's :class:`~starlette.responses.FileResponse`, which answers it as before (400/416/multipart).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from email.utils import formatdate

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from helpers.server.audit import AuditInfo
from helpers.server.cluster import accel_redirect_path
from helpers.server.errors import ApiError
from helpers.server.grantcache import grant_cache, url_key
from helpers.server.service import SharingService

__all__ = [
    "EARLY_BYTES",
    "FIRST_CHUNK",
    "INLINE_RANGE",
    "OCTET",
    "SMALL_RANGE",
    "download",
    "file_headers",
    "pread",
    "single_range",
]

SMALL_RANGE = 1024 * 1024
"""A range of at most this many bytes is read with one ``os.pread`` in the request's one thread hop."""
FIRST_CHUNK = 64 * 1024
MAX_CHUNK = 2 * 1024 * 1024  # measured: 1.3-1.4x the stream rate of 1 MiB chunks (curl, loopback)
EARLY_CHUNK = 1024 * 1024
"""Chunks stay at most this big for the first :data:`EARLY_BYTES` of a stream: a client that abandons a GET
after its headers is seen within them (the official client does, ~3 times a file)."""
EARLY_BYTES = 8 * 1024 * 1024
OCTET = "application/octet-stream"


class _BigChunkFileResponse(FileResponse):
    """Starlette's FileResponse (multiple ranges, If-Range, range errors) with larger reads."""

    chunk_size = MAX_CHUNK


@dataclass
class _Grant:
    """What one thread hop found: the file, its stat, and the bytes of a small range (if asked)."""

    path: str
    st: os.stat_result
    accel: str | None = None
    span: tuple[int, int] | None = None  # [start, end) of a single range
    data: bytes | None = None
    fallback: bool = False  # let Starlette's FileResponse answer (unusual Range headers)


def single_range(header: str | None, size: int) -> tuple[tuple[int, int] | None, bool]:
    """``(span, fallback)`` of a ``Range`` header: one satisfiable ``bytes=`` range, else fallback."""
    if header is None:
        return None, False
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None, True
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or (not first and last.isdigit())):
        return None, True
    if last and not last.isdigit():
        return None, True
    if not first:  # the last n bytes
        n = int(last)
        if n == 0:
            return None, True
        return (max(0, size - n), size), False
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        return None, True  # 416, answered by FileResponse
    return (start, end), False


INLINE_RANGE = 64 * 1024
"""On the event loop (a remembered grant, SQLite catalog) at most this many bytes are read at once (a
``stat`` and one ``pread``: less than the thread hop it saves); a bigger body streams."""


def _resolve(svc: SharingService, request: Request, info: AuditInfo) -> str:
    """The file a signed URL grants: signature + revocation + IP list in one catalog read transaction,
    remembered with the access generation read first in it (:mod:`helpers.server.grantcache`)."""
    q = request.query_params
    key = url_key(request)

    def checked(_conn: object) -> str:  # one catalog read transaction (one commit on PostgreSQL)
        generation = svc.catalog.access_generation()  # the same snapshot as the checks below
        path = svc.resolve_download(
            request.path_params["token"],
            q.get("exp") or "",
            q.get("X-Amz-Signature") or "",
            info,
            q.get("rcp") or "",
        )
        svc.check_address(request, info.recipient)  # IP access list (403)
        grant_cache(svc).remember(svc, key, path, info, generation)
        return path

    svc.view_store  # noqa: B018 - made (schemas ensured: writes) before the read transaction
    svc.materializer  # noqa: B018
    return svc.catalog.db.read(checked)


def _grant(
    svc: SharingService, request: Request, info: AuditInfo, path: str | None, look: bool
) -> _Grant:
    """The thread hop of a download: the remembered grant (when ``look``) or else the checks (unless
    ``path`` was remembered already), then stat and a small range."""
    if look:
        path = grant_cache(svc).lookup(svc, url_key(request), info)
    return _prepare(path or _resolve(svc, request, info), request, SMALL_RANGE)


def _prepare(path: str, request: Request, read_limit: int) -> _Grant:
    """``stat`` the granted file and parse the Range; read a range of at most ``read_limit`` bytes."""
    accel = accel_redirect_path(path)  # behind nginx: it streams the file (server.cluster)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise ApiError(
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "This file no longer exists (the table was vacuumed or rewritten); query the table again",
        )
    grant = _Grant(path, st, accel)
    if accel is not None:
        return grant
    headers = request.headers
    if headers.get("if-range") is not None and headers.get("range") is not None:
        grant.fallback = True
        return grant
    grant.span, grant.fallback = single_range(headers.get("range"), st.st_size)
    if request.method == "HEAD" or grant.fallback:
        return grant
    if grant.span is not None and grant.span[1] - grant.span[0] <= read_limit:
        grant.data = pread(path, grant.span[1] - grant.span[0], grant.span[0])
        grant.span = (grant.span[0], grant.span[0] + len(grant.data))
    elif grant.span is None and st.st_size <= min(read_limit, FIRST_CHUNK):
        # a whole small file in one read: what the stream's first chunk would have read anyway
        grant.data = pread(path, st.st_size, 0)
    return grant


def pread(path: str, size: int, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def file_headers(st: os.stat_result) -> dict[str, str]:
    """Starlette's FileResponse headers (same ETag), so clients see no difference."""
    return dict(_file_headers(st.st_mtime, st.st_size))


@functools.lru_cache(maxsize=4096)
def _file_headers(mtime: float, size: int) -> tuple[tuple[str, str], ...]:
    # made once per file version: the client asks for the same file about 11 times
    base = f"{mtime}-{size}"
    return (
        ("accept-ranges", "bytes"),
        ("content-length", str(size)),
        ("last-modified", formatdate(mtime, usegmt=True)),
        ("etag", f'"{hashlib.md5(base.encode(), usedforsecurity=False).hexdigest()}"'),
    )


class _FileBody(Response):
    """A file (or one range of it) answered with ``os.pread``: in memory when small, else streamed."""

    def __init__(self, grant: _Grant, head: bool) -> None:
        st = grant.st
        headers = file_headers(st)
        status = 200
        self._start, self._end = 0, st.st_size
        if grant.span is not None:
            self._start, self._end = grant.span
            status = 206
            headers["content-range"] = f"bytes {self._start}-{self._end - 1}/{st.st_size}"
            headers["content-length"] = str(self._end - self._start)
        elif grant.data is not None:  # the whole file, read at once (its length as read)
            headers["content-length"] = str(len(grant.data))
        headers["content-type"] = OCTET
        self.status_code = status
        self.background = None
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self._path, self._head, self._data = grant.path, head, grant.data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if self._head or self._data is not None or self._start >= self._end:
            await send(
                {"type": "http.response.body", "body": self._data or b"", "more_body": False}
            )
            return
        await _stream(self._path, self._start, self._end, receive, send)


async def _stream(path: str, start: int, end: int, receive: Receive, send: Send) -> None:
    """Send ``[start, end)`` of ``path`` in growing chunks; stop when the client disconnects."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    fd = await run_in_threadpool(os.open, path, os.O_RDONLY)
    try:
        pos, size = start, FIRST_CHUNK
        while pos < end and not gone.is_set():
            chunk = await run_in_threadpool(os.pread, fd, min(size, end - pos), pos)
            if not chunk:  # the file shrank underneath: end the body (the length is wrong anyway)
                break
            pos += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": pos < end})
            await asyncio.sleep(0)  # let a pending disconnect be seen before the next read
            size = min(MAX_CHUNK if pos - start >= EARLY_BYTES else EARLY_CHUNK, size * 2)
        if pos < end and not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        os.close(fd)


async def download(svc: SharingService, request: Request, info: AuditInfo) -> Response:
    """``GET``/``HEAD /files/<token>``: a signed URL's file (route of :mod:`helpers.server.app`)."""
    if svc.catalog.access_generation_is_local():  # no round trip: cheaper than the thread hop
        path = grant_cache(svc).lookup(svc, url_key(request), info)
        if path is not None:  # stat and at most one small pread; bigger bodies stream (_stream)
            grant = _prepare(path, request, INLINE_RANGE)
        else:
            grant = await run_in_threadpool(_grant, svc, request, info, None, False)
    else:  # a round trip to the database server (PostgreSQL, not watched): never on the event loop
        grant = await run_in_threadpool(_grant, svc, request, info, None, True)
    info.num_files = 1
    if grant.accel is not None:
        return Response(headers={"X-Accel-Redirect": grant.accel, "Content-Type": OCTET})
    if grant.fallback:
        return _BigChunkFileResponse(grant.path, media_type=OCTET, stat_result=grant.st)
    return _FileBody(grant, request.method == "HEAD")
