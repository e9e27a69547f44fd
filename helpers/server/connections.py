"""Connection limits uvicorn lacks: a request-head read timeout and a cap on open connections.

uvicorn's h11 protocol has a keep-alive timeout (idle *between* requests) but nothing bounds how long a
client may take to send a request's headers: a client that sends half a request head and stops holds
its connection (and a file descriptor) forever. :func:`limited_protocol` returns an ``H11Protocol``
subclass that

- closes a connection whose request head is not complete ``header_timeout_seconds`` after the
  connection opened, or after the previous response (the clock starts with the first byte of the next
  request; the idle time before it is the keep-alive timeout's);
- answers a connection beyond ``max_connections`` with ``503`` and ``Retry-After`` and closes it at once
  (an overload, not the client's mistake; the official client retries 5xx with backoff).

The request head itself is bounded by h11 (``max_header_bytes``: a larger head is a 400).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from helpers.server.limits import ServerLimits

__all__ = ["limited_protocol"]

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_BUSY_BODY = (
    b'{"errorCode":"TEMPORARILY_UNAVAILABLE","message":"The server has too many open connections; '
    b'retry in a moment"}'
)


class _LimitedH11Protocol(H11Protocol):
    """``H11Protocol`` with a request-head timeout and a connection cap (class attributes)."""

    header_timeout: float = 10.0
    max_connections: int = 512

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
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_head_timer()  # a request head is (still) being received
        else:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        # idle until the next request's first byte: the keep-alive timeout's job, not ours
        self._disarm_head_timer()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def limited_protocol(limits: ServerLimits, workers: int = 1) -> type[Any]:
    """The ``H11Protocol`` subclass enforcing ``limits`` (pass it as uvicorn's ``http=``).

    :param workers: server processes sharing the port: each caps its share of ``max_connections``.
    """
    return type(
        "LimitedH11Protocol",
        (_LimitedH11Protocol,),
        {
            "header_timeout": float(limits.header_timeout_seconds),
            "max_connections": max(1, -(-int(limits.max_connections) // max(1, workers))),
        },
    )
