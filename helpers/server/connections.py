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
import fcntl
import struct
import termios
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from helpers.server.direct import DirectAnswer
from helpers.server.files import EARLY_BYTES, FIRST_CHUNK
from helpers.server.limits import ServerLimits

try:  # the fast path; without httptools (a C extension) the h11 protocol below serves
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency, but the fallback keeps serving
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

Direct = Callable[[bytes, bytes, list[tuple[bytes, bytes]], str | None], DirectAnswer | None]
"""``(method, url, headers, client address) -> answer or None``: :meth:`DirectFiles.answer`."""

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
        self._lost = False
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
        self._lost = True
        self._disarm_head_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's stop of this connection; over TLS, then an abort once everything is sent."""
        super().shutdown()  # type: ignore[misc]  # the protocol class it is mixed into has it
        if self.transport.get_extra_info("sslcontext") is not None:
            self._abort_when_sent()

    def _abort_when_sent(self) -> None:
        """A TLS close waits for the peer's ``close_notify`` (asyncio: up to 30 s), which an idle
        keep-alive client that does not read never sends: the server's stop would wait for it, and
        ``sharelab stop`` end in SIGKILL. Once the connection is closing and its bytes are out,
        not waiting loses nothing."""
        if self._lost:
            return
        if self.transport.is_closing() and self.transport.get_write_buffer_size() == 0:
            self.transport.abort()
            return
        self.loop.call_later(0.2, self._abort_when_sent)


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
        """``HttpToolsProtocol`` with a request-head timeout, a head size bound and a connection cap,
        and the direct answers of repeated signed downloads."""

        direct: Direct | None = None

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
            elif self._in_head and self._head_bytes:  # a head begun, not complete: its clock runs
                self._arm_head_timer()

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
            # the first byte of a request: its head's clock starts, armed after this chunk only if
            # the head is still incomplete then (data_received; most heads come in one chunk)
            self._head_bytes = 1

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm_head_timer()
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.max_header_bytes:  # the head was complete in one large chunk
                # an exception stops the parser (no body/message callbacks follow); uvicorn answers
                # a parser error with send_400_response, which answers 431 for this one
                self._head_over = True
                raise ValueError("request head too large")
            if not self._answer_directly():
                super().on_headers_complete()

        def _answer_directly(self) -> bool:
            """Answer a repeated signed download here (:mod:`helpers.server.direct`), not through
            ASGI: only when no response is under way (a pipelined request waits its turn in ASGI)."""
            direct = self.direct
            if direct is None or self.pipeline or self.parser.should_upgrade():
                return False
            if self.cycle is not None and not self.cycle.response_complete:
                return False
            address = self.client[0] if self.client else None
            answer = direct(self.parser.get_method(), self.url, self.headers, address)
            if answer is None:
                return False
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            cycle = _DirectCycle(keep_alive)
            self.cycle = cycle  # type: ignore[assignment]  # what uvicorn's callbacks (message end, connection lost) look at
            self.transport.write(self._direct_head(answer, keep_alive) + answer.body)
            if answer.path is None:
                self._direct_done(cycle)
            else:
                task = self.loop.create_task(self._send_file(cycle, answer))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
            return True

        def _direct_head(self, answer: DirectAnswer, keep_alive: bool) -> bytes:
            content = [STATUS_LINE[answer.status]]
            for name, value in (*self.server_state.default_headers, *answer.headers):
                content.extend((name, b": ", value, b"\r\n"))
            if not keep_alive:
                content.append(b"connection: close\r\n")
            content.append(b"\r\n")
            return b"".join(content)

        async def _send_file(self, cycle: _DirectCycle, answer: DirectAnswer) -> None:
            """The body: ``sendfile(2)`` (the loop's fallback over TLS); a client gone, or a file
            shorter than its length, closes the connection."""
            assert answer.path is not None
            pos, end = answer.start, answer.end
            try:
                with open(answer.path, "rb") as file:
                    if answer.status == 200:  # a range is read to its end; a whole file may not be
                        pos = await self._send_early(cycle, file, pos, end)
                    if pos < end and not self._gone(cycle):
                        pos += await self.loop.sendfile(self.transport, file, pos, end - pos)
            except (
                OSError,
                RuntimeError,
                ValueError,
            ):  # the client went away, the transport closed
                pass
            finally:
                if pos != end:
                    cycle.keep_alive = False
                self._direct_done(cycle)

        def _gone(self, cycle: _DirectCycle) -> bool:
            return cycle.disconnected or self.transport.is_closing()

        async def _send_early(self, cycle: _DirectCycle, file: Any, pos: int, end: int) -> int:
            """The first :data:`EARLY_BYTES` of a whole file in doubling chunks, each sent once the
            client has taken most of the previous one: a client that reads the headers and closes (the
            official client's GETs without a Range, ~3 times a file) costs a few hundred KiB, not the
            socket buffers' megabytes."""
            sock = self.transport.get_extra_info("socket")
            if sock is None or self.transport.get_extra_info("sslcontext") is not None:
                return pos  # TLS: the loop's fallback reads and writes in its own chunks
            limit, size = pos + EARLY_BYTES, FIRST_CHUNK
            while pos < min(end, limit) and not self._gone(cycle):
                pos += await self.loop.sendfile(self.transport, file, pos, min(size, end - pos))
                size *= 2
                pause, waited = 0.001, 0.0
                while not self._gone(cycle) and _unsent(sock) > FIRST_CHUNK and waited < 5:
                    await asyncio.sleep(pause)  # the close of a client that is gone is seen here
                    waited += pause
                    pause = min(0.016, pause * 2)
            return pos

        def _direct_done(self, cycle: _DirectCycle) -> None:
            cycle.response_complete = True
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()  # the next pipelined request, or the keep-alive clock

    return _LimitedHttpToolsProtocol


def _unsent(sock: Any) -> int:
    """Bytes in the socket's send queue the peer has not acknowledged (Linux ``SIOCOUTQ``)."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except (OSError, ValueError):  # closed underneath (fileno -1): nothing more is sent anyway
        return 0


class _NoEvent:
    def set(self) -> None:
        pass


class _DirectCycle:
    """What uvicorn's protocol reads and writes of a request's cycle while a direct answer is sent."""

    message_event = _NoEvent()

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive  # uvicorn's shutdown() clears it: close once the answer is out
        self.response_complete = False
        self.disconnected = False
        self.more_body = True


_HTTPTOOLS_PROTOCOL = _limited_httptools_protocol()


def limited_protocol(
    limits: ServerLimits, workers: int = 1, direct: Direct | None = None
) -> type[Any]:
    """The protocol class enforcing ``limits`` (pass it as uvicorn's ``http=``): httptools', or h11's
    when httptools is not installed (then pass ``h11_max_incomplete_event_size`` too).

    :param workers: server processes sharing the port: each caps its share of ``max_connections``.
    :param direct: answers repeated signed downloads below ASGI (httptools' protocol only).
    """
    base = _HTTPTOOLS_PROTOCOL or _LimitedH11Protocol
    return type(
        "Limited" + base.__name__.removeprefix("_Limited"),
        (base,),
        {
            "header_timeout": float(limits.header_timeout_seconds),
            "max_connections": max(1, -(-int(limits.max_connections) // max(1, workers))),
            "max_header_bytes": int(limits.max_header_bytes),
            "direct": staticmethod(direct) if direct is not None else None,
        },
    )
