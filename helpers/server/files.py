"""The signed file download route (``GET``/``HEAD /files/<token>``), at a static file server's cost.

The official client makes about 11 requests per file (HEADs, 64 KiB footer reads, GETs without a Range
that it abandons after the headers), so what one request costs matters more than the stream's speed:

- **one thread hop** per request: the signature, the access stamp (revocation), the IP access list and
  ``stat`` run together in one call on the thread pool (:func:`_grant`); a ``HEAD`` never opens the file,
  and a range of at most :data:`SMALL_RANGE` bytes is read in the same hop with one ``os.pread``;
- **no read-ahead for a client that is gone**: a full ``GET`` streams with ``os.pread`` chunks that start
  at 64 KiB and double up to 1 MiB, each read only once the previous one was handed to the connection,
  and stops at the first ``http.disconnect`` (a client that reads the headers and closes costs about one
  small chunk, not the file);
- behind nginx (:func:`helpers.server.cluster.accel_redirect_path`) the answer is an ``X-Accel-Redirect``
  and nginx streams the file; uvicorn offers no zero-copy (``pathsend``) extension, so without a proxy the
  bytes go through the event loop as above.

Anything unusual (several ranges, ``If-Range``, a malformed or unsatisfiable range) is left to
Starlette's :class:`~starlette.responses.FileResponse`, which answers it as before (400/416/multipart).
"""

from __future__ import annotations

import asyncio
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
from helpers.server.service import SharingService

__all__ = ["SMALL_RANGE", "download"]

SMALL_RANGE = 1024 * 1024
"""A range of at most this many bytes is read with one ``os.pread`` in the request's one thread hop."""
FIRST_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024
_OCTET = "application/octet-stream"


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


def _single_range(header: str | None, size: int) -> tuple[tuple[int, int] | None, bool]:
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


def _grant(svc: SharingService, request: Request, info: AuditInfo) -> _Grant:
    """The one thread hop of a download: signature + revocation + IP list + stat (+ a small range)."""
    q = request.query_params

    def checked(_conn: object) -> str:  # one catalog read transaction (one commit on PostgreSQL)
        path = svc.resolve_download(
            request.path_params["token"],
            q.get("exp") or "",
            q.get("X-Amz-Signature") or "",
            info,
            q.get("rcp") or "",
        )
        svc.check_address(request, info.recipient)  # IP access list (403)
        return path

    svc.view_store  # noqa: B018 - made (schemas ensured: writes) before the read transaction
    svc.materializer  # noqa: B018
    path = svc.catalog.db.read(checked)
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
    grant.span, grant.fallback = _single_range(headers.get("range"), st.st_size)
    if (
        grant.span is not None
        and request.method != "HEAD"
        and grant.span[1] - grant.span[0] <= SMALL_RANGE
    ):
        fd = os.open(path, os.O_RDONLY)
        try:
            grant.data = os.pread(fd, grant.span[1] - grant.span[0], grant.span[0])
        finally:
            os.close(fd)
        grant.span = (grant.span[0], grant.span[0] + len(grant.data))
    return grant


def _headers(st: os.stat_result) -> dict[str, str]:
    """Starlette's FileResponse headers (same ETag), so clients see no difference."""
    base = f"{st.st_mtime}-{st.st_size}"
    return {
        "accept-ranges": "bytes",
        "content-length": str(st.st_size),
        "last-modified": formatdate(st.st_mtime, usegmt=True),
        "etag": f'"{hashlib.md5(base.encode(), usedforsecurity=False).hexdigest()}"',
    }


class _FileBody(Response):
    """A file (or one range of it) answered with ``os.pread``: in memory when small, else streamed."""

    def __init__(self, grant: _Grant, head: bool) -> None:
        st = grant.st
        headers = _headers(st)
        status = 200
        self._start, self._end = 0, st.st_size
        if grant.span is not None:
            self._start, self._end = grant.span
            status = 206
            headers["content-range"] = f"bytes {self._start}-{self._end - 1}/{st.st_size}"
            headers["content-length"] = str(self._end - self._start)
        headers["content-type"] = _OCTET
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
            size = min(MAX_CHUNK, size * 2)
        if pos < end and not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        os.close(fd)


async def download(svc: SharingService, request: Request, info: AuditInfo) -> Response:
    """``GET``/``HEAD /files/<token>``: a signed URL's file (route of :mod:`helpers.server.app`)."""
    grant = await run_in_threadpool(_grant, svc, request, info)
    info.num_files = 1
    if grant.accel is not None:
        return Response(headers={"X-Accel-Redirect": grant.accel, "Content-Type": _OCTET})
    if grant.fallback:
        return _BigChunkFileResponse(grant.path, media_type=_OCTET, stat_result=grant.st)
    return _FileBody(grant, request.method == "HEAD")
