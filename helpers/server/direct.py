"""Signed downloads answered below the ASGI layer: the repeats of a URL whose grant is remembered.

The official client asks for each signed URL about 11 times; the first request runs the full checks
(:mod:`helpers.server.files` through Starlette) and remembers the grant (:mod:`helpers.server.grantcache`).
Through ASGI a repeat still costs about 0.7 ms of server CPU, most of it the ASGI machinery (a task, the
scope and message dicts, the middleware stack), against about 0.1 ms for nginx. :class:`DirectFiles`
answers such a repeat from the HTTP protocol itself (:mod:`helpers.server.connections` calls it when a
request head is complete): the same checks of the remembered grant (the access generation, the URL's and
the token's expiry, the client's address), the same headers and bodies, the same audit row, and a body
bigger than :data:`~helpers.server.files.INLINE_RANGE` sent with ``sendfile(2)`` (zero-copy; over TLS the
event loop's read-and-write fallback).

It answers only what needs nothing else: ``GET``/``HEAD`` of a remembered grant, at most one satisfiable
byte range, no ``If-Range``, no request body, no forwarding headers (behind a proxy the client's address
is the proxy's to tell: Starlette's path, with ``X-Accel-Redirect`` or links nginx checks), a catalog
whose generation costs no round trip and an audit whose row is durable once queued (its journal). Anything
else returns ``None`` and goes through Starlette as before, errors included.
"""

from __future__ import annotations

import functools
import os
import stat
import time
from dataclasses import dataclass
from urllib.parse import unquote

from helpers.server.audit import AuditInfo, event_of
from helpers.server.cluster import accel_redirect_path
from helpers.server.files import FIRST_CHUNK, INLINE_RANGE, OCTET, file_headers, pread, single_range
from helpers.server.grantcache import grant_cache
from helpers.server.service import SharingService

__all__ = ["DirectAnswer", "DirectFiles"]

_PASS = frozenset({b"if-range", b"content-length", b"transfer-encoding", b"expect"})
"""Request headers that send a request through Starlette (its answer, not a direct one)."""
_FORWARDED = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


@dataclass(frozen=True)
class DirectAnswer:
    """A response: status, headers, an in-memory body, and the span of a file sent after them."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    path: str | None = None
    """When set, ``[start, end)`` of this file follows the head (and ``body`` is empty)."""
    start: int = 0
    end: int = 0


class DirectFiles:
    """The direct answers of one :class:`SharingService`'s download route.

    :param files_prefix: the route's path up to the token (``/delta-sharing/files/``).
    """

    def __init__(self, svc: SharingService, files_prefix: str) -> None:
        self._svc = svc
        self._prefix = files_prefix.encode("ascii")
        # the X-Accel hand-off is the server's setting (its environment at start): Starlette answers then
        self._accel = accel_redirect_path("/") is not None

    def answer(
        self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]], address: str | None
    ) -> DirectAnswer | None:
        """The answer to a request head (lower-case header names), or None to let Starlette answer."""
        started = time.perf_counter()
        if self._accel or method not in (b"GET", b"HEAD") or not url.startswith(self._prefix):
            return None
        svc = self._svc
        if not (svc.audit.durable_on_put and svc.catalog.access_generation_is_local()):
            return None
        parts = _url_parts(url, len(self._prefix))
        if parts is None:
            return None
        range_header = user_agent = None
        for name, value in headers:
            if name == b"range":
                range_header = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
            elif name in _PASS or name in _FORWARDED:
                return None
        key = (*parts, address or "")
        info = AuditInfo("downloadFile", num_files=1)
        path = grant_cache(svc).lookup(svc, key, info)
        if path is None:
            return None
        found = _file_answer(path, method == b"HEAD", range_header)
        if found is not None:
            # durable once put (the journal): the row exists before the client holds the answer
            svc.audit.put(event_of(info, found.status, started, user_agent, address))
        return found


@functools.lru_cache(maxsize=4096)
def _url_parts(url: bytes, prefix: int) -> tuple[str, str, str, str] | None:
    """(token, exp, signature, rcp) of a signed URL, as :func:`~helpers.server.grantcache.url_key`
    reads them; remembered: a client asks for the same URL about 11 times."""
    raw_path, _, query = url.partition(b"?")
    token = raw_path[prefix:]
    if not token or b"/" in token or b"%" in token or b"#" in query:
        return None
    params = _query(query.decode("latin-1"))
    return (
        token.decode("latin-1"),
        params.get("exp") or "",
        params.get("X-Amz-Signature") or "",
        params.get("rcp") or "",
    )


def _query(query: str) -> dict[str, str]:
    """The parameters as Starlette decodes them (``parse_qsl``, the last of repeated names wins) at a
    fraction of the cost: only the names and values that need it are unquoted."""
    params = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[_unquote(name)] = _unquote(value)
    return params


def _unquote(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text) if "%" in text else text


def _file_answer(path: str, head: bool, range_header: str | None) -> DirectAnswer | None:
    """What :mod:`helpers.server.files` answers for the file, or None where Starlette answers it (a
    file gone: its 404; several or unsatisfiable ranges: ``FileResponse``)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    size = st.st_size
    span, fallback = single_range(range_header, size)
    if fallback:
        return None
    fields = file_headers(st)
    status, start, end = 200, 0, size
    if span is not None:
        status, (start, end) = 206, span
    body = b""
    if not head and end - start <= (INLINE_RANGE if span is not None else FIRST_CHUNK):
        body = pread(path, end - start, start)
        end = start + len(body)  # as read (a file that shrank underneath)
    if span is not None:
        fields["content-range"] = f"bytes {start}-{end - 1}/{size}"
    fields["content-length"] = str(end - start)
    fields["content-type"] = OCTET
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields.items()]
    if head or body or start >= end:
        return DirectAnswer(status, raw, body)
    return DirectAnswer(status, raw, path=path, start=start, end=end)
