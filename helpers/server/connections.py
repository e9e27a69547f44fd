"""Connection limits uvicorn lacks: a request-head read timeout, a head size bound, a connection cap.

uvicorn's protocols have a keep-alive timeout (idle *between* requests) but nothing bounds how long a
client may take to send a request's headers: a client that sends half a request head and stops holds
its connection (and a file descriptor) forever. :func:`limited_protocol` returns a subclass of uvicorn's
httptools protocol (its C parser costs far less per request than h11's pure Python; h11 is the fallback
when httptools is not installed) that

- closes a connection whose request head is not complete ``header_timeout_seconds`` after the
  connection opened, or after the previous response (the clock starts with the first byte of the next
  request; the idle time before it is the keep-alive timeout's);
- answers a connection beyond ``max_connections`` with ``503`` and ``Retry-After`` and closes it at once
  (an overload, not the client's mistake; the official client retries 5xx with backoff);
- answers a request head (request line + headers) larger than ``max_header_bytes`` with ``431`` and
  closes (httptools itself has no bound; with h11 its ``max_incomplete_event_size`` makes it a 400).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from helpers.server.limits import ServerLimits

try:  # the fast path; without httptools (a C extension) the h11 protocol below serves
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency, but the fallback keeps serving
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

__all__ = ["limited_protocol"]

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_BUSY_BODY = (
    b'{"errorCode":"TEMPORARILY_UNAVAILABLE","message":"The server has too many open connections; '
    b'retry in a moment"}'
)
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_HEAD_TOO_LARGE_BODY = (
    b'{"errorCode":"REQUEST_TOO_LARGE","message":"The request line and headers are larger than %d '
    b'bytes; send fewer or shorter headers"}'
)


class _ConnectionLimits(asyncio.Protocol):
    """The connection cap and the request-head clock, mixed into an HTTP protocol class (first base)."""

    header_timeout: float = 10.0
    max_connections: int = 512
    max_header_bytes: int = 16 * 1024
    # set by the protocol class it is mixed into
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]

    def _awaiting_head(self) -> bool:
        """Whether a request head is awaited or being received."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.transport.write(_BUSY % (len(_BUSY_BODY), _BUSY_BODY))
            self.transport.close()
            return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.header_timeout > 0:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head() and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


class _LimitedH11Protocol(_ConnectionLimits, H11Protocol):
    """``H11Protocol`` with a request-head timeout and a connection cap (h11 bounds the head)."""

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_head() and not self.transport.is_closing():
            self._arm_head_timer()  # a request head is (still) being received
        else:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        # idle until the next request's first byte: the keep-alive timeout's job, not ours
        self._disarm_head_timer()
        super().on_response_complete()


def _limited_httptools_protocol() -> type[Any] | None:
    """The ``HttpToolsProtocol`` subclass (``None`` without httptools); a function so that the class
    statement runs only when the base class imported."""
    if HttpToolsProtocol is None:  # pragma: no cover
        return None

    class _LimitedHttpToolsProtocol(_ConnectionLimits, HttpToolsProtocol):
        """``HttpToolsProtocol`` with a request-head timeout, a head size bound and a connection cap."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._in_head = True  # the connection's first request head is awaited
            self._head_bytes = 0
            self._head_over = False
            super().connection_made(transport)

        def _awaiting_head(self) -> bool:
            return self._in_head

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                # an upper bound of the head's size (a chunk may also hold the body): checked only
                # while the head is incomplete, so a small head with a body in one chunk passes
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > self.max_header_bytes:
                self._head_too_large()

        def send_400_response(self, msg: str) -> None:
            if self._head_over:  # raised by on_headers_complete below: answer why, as JSON
                self._head_too_large()
            else:
                super().send_400_response(msg)

        def _head_too_large(self) -> None:
            if self.transport.is_closing():
                return
            self._disarm_head_timer()
            body = _HEAD_TOO_LARGE_BODY % self.max_header_bytes
            self.transport.write(_HEAD_TOO_LARGE % (len(body), body))
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._head_bytes = 0
            self._arm_head_timer()  # the first byte of a request: its head's clock starts

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm_head_timer()
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.max_header_bytes:  # the head was complete in one large chunk
                # an exception stops the parser (no body/message callbacks follow); uvicorn answers
                # a parser error with send_400_response, which answers 431 for this one
                self._head_over = True
                raise ValueError("request head too large")
            super().on_headers_complete()

    return _LimitedHttpToolsProtocol


_HTTPTOOLS_PROTOCOL = _limited_httptools_protocol()


def limited_protocol(limits: ServerLimits, workers: int = 1) -> type[Any]:
    """The protocol class enforcing ``limits`` (pass it as uvicorn's ``http=``): httptools', or h11's
    when httptools is not installed (then pass ``h11_max_incomplete_event_size`` too).

    :param workers: server processes sharing the port: each caps its share of ``max_connections``.
    """
    base = _HTTPTOOLS_PROTOCOL or _LimitedH11Protocol
    return type(
        "Limited" + base.__name__.removeprefix("_Limited"),
        (base,),
        {
            "header_timeout": float(limits.header_timeout_seconds),
            "max_connections": max(1, -(-int(limits.max_connections) // max(1, workers))),
            "max_header_bytes": int(limits.max_header_bytes),
        },
    )
