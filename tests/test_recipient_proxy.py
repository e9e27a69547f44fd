"""The lean loader goes through the proxy ``requests`` would use: HTTP_PROXY (absolute-form requests, with
the proxy's credentials), HTTPS_PROXY (a CONNECT tunnel, the server's certificate verified through it),
NO_PROXY, and a clear error for a proxy that is down or of a kind it does not speak.

The proxy is a small threaded one on a loopback port that records what it carries; the provider is a
real server (plain HTTP, and one over TLS with the lab CA).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers.recipient import fast_load
from tests.support import free_port, sharelab, write_profile
from tests.workshop import minilab

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, str | None]] = []  # (method, target, Proxy-Authorization)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Handler(socketserver.BaseRequestHandler):
    server: _Proxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        lowered = {k.lower(): v for k, v in fields.items()}
        self.server.seen.append((method, target, lowered.get("proxy-authorization")))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=30)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _pipe(self.request, upstream, rest)
            return
        # absolute form: forward once, origin form, and close after the answer
        rest_of_url = target.split("://", 1)[1]
        hostport, _, path = rest_of_url.partition("/")
        host, _, port = hostport.rpartition(":")
        keep = [
            f"{k}: {v}"
            for k, v in fields.items()
            if k.lower() not in ("proxy-authorization", "connection")
        ]
        out = (
            f"{method} /{path} HTTP/1.1\r\n"
            + "\r\n".join([*keep, "Connection: close"])
            + "\r\n\r\n"
        )
        upstream = socket.create_connection((host, int(port)), timeout=30)
        upstream.sendall(out.encode("latin-1") + rest)
        _pipe(self.request, upstream, b"")


def _pipe(client: socket.socket, upstream: socket.socket, first: bytes) -> None:
    """Copy bytes both ways until either side closes."""
    if first:
        upstream.sendall(first)

    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    back = threading.Thread(target=copy, args=(upstream, client), daemon=True)
    back.start()
    copy(client, upstream)
    back.join(30)
    upstream.close()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two lab servers over one table: plain HTTP and TLS; their profiles and the lab CA."""
    out: dict[str, Any] = {}
    homes = []
    for kind in ("plain", "tls"):
        root = tmp_path_factory.mktemp(kind)
        home = root / "home"
        home.mkdir()
        minilab.build(home)
        token = minilab.recipient_token(home, "pat")
        flags = ["--tls"] if kind == "tls" else []
        done = sharelab(home, "start", *flags, "--port", str(free_port()))
        assert done.returncode == 0, done.stderr
        homes.append(home)
        endpoint = json.loads((home / "server" / "server.json").read_text())["endpoint"]
        profile = write_profile(root / "pat.share", endpoint, token)
        out[kind] = f"{profile}#{minilab.TABLE}"
        if kind == "tls":
            out["ca"] = str(home / "tls" / "ca.pem")
    try:
        yield out
    finally:
        for home in homes:
            sharelab(home, "stop")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Proxy]:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = _Proxy()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_http_proxy_carries_every_request_with_its_credentials(
    provider: dict[str, Any], proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = fast_load(provider["plain"])
    assert proxy.seen == []
    monkeypatch.setenv("HTTP_PROXY", f"http://lab%20user:s3cret@127.0.0.1:{proxy.port}")
    through = fast_load(provider["plain"])
    assert (
        through.sort_values("id")
        .reset_index(drop=True)
        .equals(direct.sort_values("id").reset_index(drop=True))
    )
    methods = {m for m, _, _ in proxy.seen}
    assert methods == {"POST", "GET"}, proxy.seen
    assert all(target.startswith("http://127.0.0.1:") for _, target, _ in proxy.seen)
    assert any("/query" in t for _, t, _ in proxy.seen) and any(
        "/files/" in t for _, t, _ in proxy.seen
    )
    # "lab user:s3cret", unquoted, in Basic
    assert {a for _, _, a in proxy.seen} == {"Basic bGFiIHVzZXI6czNjcmV0"}


def test_no_proxy_names_the_hosts_that_go_direct(
    provider: dict[str, Any], proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert len(fast_load(provider["plain"])) == minilab.ROWS
    assert proxy.seen == []


def test_https_goes_through_a_connect_tunnel_still_verified(
    provider: dict[str, Any], proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", provider["ca"])
    assert len(fast_load(provider["tls"])) == minilab.ROWS
    assert proxy.seen and {m for m, _, _ in proxy.seen} == {"CONNECT"}
    assert all(t.startswith("127.0.0.1:") for _, t, _ in proxy.seen)
    # through the tunnel the certificate is still the server's to prove: another CA fails
    other = Path(provider["ca"]).with_name("not-the-lab-ca.pem")
    other.write_text(Path(requests.certs.where()).read_text())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    with pytest.raises(requests.exceptions.SSLError):
        fast_load(provider["tls"])


def test_a_proxy_that_is_down_or_unspoken_is_a_clear_error(
    provider: dict[str, Any], proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(requests.exceptions.ProxyError, match="through the proxy 127.0.0.1"):
        fast_load(provider["plain"])
    monkeypatch.setenv("HTTP_PROXY", f"https://127.0.0.1:{proxy.port}")
    with pytest.raises(requests.exceptions.ProxyError, match="not an http:// proxy"):
        fast_load(provider["plain"])
