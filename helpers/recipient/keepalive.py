"""Plain HTTP/1.1 keep-alive connections for the lean loader (:mod:`helpers.recipient.fast`).

A download through ``requests`` or urllib3 costs the client 0.6 to 1 ms of CPU beyond the request itself
(measured against ``http.client`` on loopback: 0.3 ms), and the client shares the cores with the server
on a learner's machine. So the loader speaks ``http.client`` directly: one GET per signed URL on idle
connections kept per (scheme, host, port, CA bundle) for this process and reused across calls and
threads; a kept connection the server has closed meanwhile is replaced once, transparently.

HTTPS is verified against the bundle ``requests`` would use (``REQUESTS_CA_BUNDLE``, which
:func:`~helpers.recipient.load_profile` sets for a lab CA kept beside the profile, else certifi's roots);
verification is never turned off. Proxies are those ``requests`` (the official client) would use for the
URL: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` names the host; an ``http://`` proxy
(credentials in its URL become ``Proxy-Authorization``) carries plain requests in absolute form and HTTPS
through a ``CONNECT`` tunnel, the server's certificate still verified end to end. Errors are those of
``requests`` (``HTTPError`` with the server's one-line message, ``ConnectionError``, ``SSLError``,
``ProxyError``), so a caller handles the official client and the loader alike.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import requests
from requests.utils import get_environ_proxies

__all__ = ["Reply", "request"]

_Key = tuple[str, str, int, str | None, "_Proxy | None"]


@dataclass(frozen=True)
class _Proxy:
    """An ``http://`` proxy: where it listens, and its ``Proxy-Authorization`` (or None)."""

    host: str
    port: int
    auth: str | None


_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_ROUTES: dict[tuple[str, str, int, tuple[str | None, ...]], _Proxy | None] = {}
# a kept connection the server closed shows one of these on its next request: replaced, not an error
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_IDLE: dict[_Key, list[http.client.HTTPConnection]] = {}
_CONTEXTS: dict[str | None, ssl.SSLContext] = {}
_LOCK = threading.Lock()
_PID = [os.getpid()]


def _context(ca: str | None) -> ssl.SSLContext:
    context = _CONTEXTS.get(ca)
    if context is None:
        if ca is None:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
        else:
            context = ssl.create_default_context(cafile=ca)
        _CONTEXTS[ca] = context
    return context


def _proxy_for(scheme: str, host: str, port: int) -> _Proxy | None:
    """The proxy ``requests`` would use for ``scheme://host:port`` (from the environment), or None."""
    env = tuple(os.environ.get(n) or os.environ.get(n.upper()) for n in _PROXY_VARS)
    key = (scheme, host, port, env)
    if key in _ROUTES:
        return _ROUTES[key]
    found = get_environ_proxies(f"{scheme}://{host}:{port}/")
    url = found.get(scheme) or found.get("all")
    proxy = None
    if url:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise requests.exceptions.ProxyError(
                f"the proxy {parts.scheme}://{parts.hostname}:{parts.port or ''} is not an http:// "
                "proxy, the only kind the lean loader speaks; set HTTPS_PROXY=http://... or use the "
                "official client (delta_sharing.load_as_pandas)"
            )
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth = "Basic " + base64.b64encode(pair).decode("ascii")
        proxy = _Proxy(parts.hostname, parts.port or 80, auth)
    _ROUTES[key] = proxy
    return proxy


def _take(key: _Key, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
    """An idle connection for ``key`` (True: reused) or a new one."""
    with _LOCK:
        if _PID[0] != os.getpid():  # a forked child must not share its parent's sockets
            _IDLE.clear()
            _PID[0] = os.getpid()
        idle = _IDLE.get(key)
        if idle:
            conn = idle.pop()
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        scheme, host, port, ca, proxy = key
        if scheme == "https":
            context = _context(ca)
            if proxy is None:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
                return conn, False
            # the tunnel: CONNECT host:port, then TLS to the server itself (SNI and checks: host)
            conn = http.client.HTTPSConnection(
                proxy.host, proxy.port, timeout=timeout, context=context
            )
            auth = {"Proxy-Authorization": proxy.auth} if proxy.auth else None
            conn.set_tunnel(host, port, headers=auth)
            return conn, False
    if proxy is not None:
        return http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout), False
    return http.client.HTTPConnection(host, port, timeout=timeout), False


def _give_back(key: _Key, conn: http.client.HTTPConnection) -> None:
    with _LOCK:
        if _PID[0] == os.getpid():
            _IDLE.setdefault(key, []).append(conn)
            return
    conn.close()


class Reply:
    """An answer being read: its status and headers, the body as lines or into one buffer."""

    def __init__(
        self, key: _Key, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse
    ) -> None:
        self._key, self._conn, self.resp = key, conn, resp

    def lines(self) -> Iterator[bytes]:
        """The body's lines as they arrive."""
        while line := self.resp.readline():
            yield line

    def body(self, where: str) -> bytes | bytearray:
        """The whole body, read into one buffer sized by Content-Length when there is one."""
        size = self.resp.length
        if size is None:
            return self.resp.read()
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        try:
            while got < size:
                n = self.resp.readinto(view[got:])
                if not n:
                    break
                got += n
        except (OSError, http.client.HTTPException):
            pass  # said below, with the bytes that came
        if got < size:
            raise requests.ConnectionError(f"{where} ended after {got} of {size} bytes; load again")
        return buf

    def close(self) -> None:
        """Keep the connection when the answer was read to its end, else drop it."""
        if self.resp.isclosed() and not self.resp.will_close:
            _give_back(self._key, self._conn)
        else:
            self._conn.close()


@contextmanager
def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 300,
) -> Iterator[Reply]:
    """``method url`` on a kept connection; the :class:`Reply` of a 2xx/3xx answer, else
    ``requests.HTTPError`` with the server's message (never the URL's signature)."""
    where = url.split("?", 1)[0]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise requests.exceptions.InvalidURL(f"{where} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
    proxy = _proxy_for(parts.scheme, parts.hostname, port)
    key: _Key = (parts.scheme, parts.hostname, port, ca if parts.scheme == "https" else None, proxy)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = dict(headers or {})
    if proxy is not None and parts.scheme == "http":  # through the proxy: the absolute form
        target = f"http://{parts.netloc.rpartition('@')[2]}{target}"
        if proxy.auth:
            headers["Proxy-Authorization"] = proxy.auth
    reply = _send(key, method, target, body, headers, timeout, where)
    try:
        if reply.resp.status >= 400:
            raise _refused(reply.resp, where)
        yield reply
    finally:
        reply.close()


def _send(
    key: _Key,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
    where: str,
) -> Reply:
    while True:
        conn, reused = _take(key, timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
            return Reply(key, conn, conn.getresponse())
        except _STALE:
            conn.close()
            if not reused:
                raise requests.ConnectionError(
                    f"{where}: the server closed the connection; is the provider's server running?"
                ) from None
        except ssl.SSLError as exc:
            conn.close()
            raise requests.exceptions.SSLError(
                f"TLS check failed for {where} ({exc.reason or exc}); keep the lab CA beside the "
                "profile (helpers.recipient.activate_with_ca) or trust it with trust_ca()"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            proxy = key[4]
            if proxy is not None:
                raise requests.exceptions.ProxyError(
                    f"{where} through the proxy {proxy.host}:{proxy.port} failed ({exc}); check "
                    "HTTP_PROXY/HTTPS_PROXY, or name the provider's host in NO_PROXY"
                ) from None
            raise requests.ConnectionError(
                f"{where} does not answer ({exc}): is the provider's server running?"
            ) from None


def _refused(resp: http.client.HTTPResponse, where: str) -> requests.HTTPError:
    """The server's one-line message as a ``requests.HTTPError`` (what the official client raises)."""
    text = resp.read().decode("utf-8", "replace")
    try:
        message = json.loads(text).get("message") or text
    except (ValueError, AttributeError):
        message = text
    shown = requests.Response()
    shown.status_code = resp.status
    shown.url = where
    shown.reason = resp.reason
    return requests.HTTPError(f"{resp.status} from {where}: {message.strip()}", response=shown)
