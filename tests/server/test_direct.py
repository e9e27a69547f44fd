"""Repeated signed downloads answered below ASGI (helpers.server.direct via helpers.server.connections).

A real uvicorn server with sharelab's protocol runs in a thread on a loopback port (plain HTTP, and a
second one over TLS with the lab CA) and serves a real Delta table of one ~3 MB file. The direct answers
are counted by wrapping the app's :class:`DirectFiles` (the only instrumentation): each test checks both
what the client received and which path answered it.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import delta_sharing
import pytest
import requests
import uvicorn

from helpers.catalog import open_catalog
from helpers.procs import free_port
from helpers.provider import Provider
from helpers.server.app import create_app
from helpers.server.connections import limited_protocol
from helpers.server.limits import ServerLimits
from helpers.tls import prepare_tls
from tests.support import blob_table, share_tables, write_profile

ROWS = 12
BLOB = 256 * 1024  # incompressible: a ~3 MB file, bigger than what is answered from memory


class _Served:
    def __init__(self, home: Path, tls: bool) -> None:
        self.home = home
        self.direct: list[int] = []  # status of each direct answer
        files = prepare_tls(home) if tls else None
        self.app = create_app(home, tls=files)
        answer = self.app.state.direct_files.answer

        def counted(*args: Any) -> Any:
            found = answer(*args)
            if found is not None:
                self.direct.append(found.status)
            return found

        self.port = free_port()
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}/delta-sharing/"
        self.ca = str(files.ca) if files and files.ca else None
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            http=limited_protocol(ServerLimits(), 1, direct=counted),
            loop="asyncio",
            lifespan="on",
            log_level="warning",
            ssl_certfile=str(files.cert) if files else None,
            ssl_keyfile=str(files.key) if files else None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("direct")
    data = blob_table(root / "blobs", ROWS)
    home = root / "home"
    token = share_tables(home, {"lab.files.blobs": root / "blobs"})
    errors = _Errors()
    for name in ("asyncio", "uvicorn.error"):
        logging.getLogger(name).addHandler(errors)
    plain, tls = _Served(home, tls=False), _Served(home, tls=True)
    try:
        yield {"plain": plain, "tls": tls, "token": token, "bytes": data}
    finally:
        plain.stop()
        tls.stop()
        for name in ("asyncio", "uvicorn.error"):
            logging.getLogger(name).removeHandler(errors)
    # a direct answer's task that failed would only be logged ("Task exception was never retrieved")
    assert not errors.records, [r.getMessage() for r in errors.records]


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _signed_url(served: _Served, token: str) -> str:
    resp = requests.post(
        f"{served.endpoint}shares/s/schemas/files/tables/blobs/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        verify=served.ca or True,
    )
    resp.raise_for_status()
    files = [json.loads(x)["file"] for x in resp.text.splitlines() if '"file"' in x]
    return str(files[0]["url"])


def _audited_downloads(home: Path) -> int:
    return open_catalog(home).db.read_one(
        lambda c: c.execute("SELECT count(*) FROM audit WHERE action = 'downloadFile'").fetchone()[
            0
        ]
    )


def _same(a: requests.Response, b: requests.Response) -> None:
    assert a.status_code == b.status_code
    assert {k: v for k, v in a.headers.items() if k.lower() != "date"} == {
        k: v for k, v in b.headers.items() if k.lower() != "date"
    }
    assert a.content == b.content


@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_repeats_are_answered_directly_with_the_same_answer(lab: dict[str, Any], kind: str) -> None:
    served: _Served = lab[kind]
    url, data = _signed_url(served, lab["token"]), lab["bytes"]
    audited = _audited_downloads(served.home)
    verify = served.ca or True  # per request: REQUESTS_CA_BUNDLE would win over a session's
    with requests.Session() as session:
        for headers in ({}, {"Range": "bytes=4-99"}, {"Range": "bytes=-70000"}):
            for method in ("HEAD", "GET"):
                before = len(served.direct)
                first = session.request(method, url, headers=headers, timeout=30, verify=verify)
                again = session.request(method, url, headers=headers, timeout=30, verify=verify)
                _same(first, again)
                assert len(served.direct) - before >= 1  # at least the repeat answered directly
                if method == "GET":
                    start = 4 if headers.get("Range") == "bytes=4-99" else 0
                    want = data[start:100] if start else data
                    if headers.get("Range") == "bytes=-70000":
                        want = data[-70000:]
                    assert again.content == want
    # the 12 requests: the first through Starlette (the full checks), the rest direct, each audited
    assert len(served.direct) >= 11
    time.sleep(0.5)  # the rows are durable in the journal at once; the catalog gets them in batches
    deadline = time.monotonic() + 10
    while _audited_downloads(served.home) - audited < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _audited_downloads(served.home) - audited == 12


def test_the_official_client_reads_through_direct_answers(lab: dict[str, Any]) -> None:
    served: _Served = lab["plain"]
    profile = write_profile(served.home.parent / "r.share", served.endpoint, lab["token"])
    before = len(served.direct)
    frame = delta_sharing.load_as_pandas(f"{profile}#s.files.blobs")
    assert sorted(frame["id"]) == list(range(ROWS))
    assert len(served.direct) - before >= 8  # of its ~11 requests for the file, all but the first


def test_a_revocation_is_seen_at_the_next_request(lab: dict[str, Any]) -> None:
    served: _Served = lab["plain"]
    Provider(served.home).sql("CREATE RECIPIENT gone; GRANT SELECT ON SHARE s TO RECIPIENT gone")
    token = open_catalog(served.home).issue_token("gone").token
    url = _signed_url(served, token)
    with requests.Session() as session:
        assert session.head(url, timeout=10).status_code == 200
        assert session.head(url, timeout=10).status_code == 200
        before = len(served.direct)
        Provider(served.home).sql("REVOKE SELECT ON SHARE s FROM RECIPIENT gone")
        denied = session.get(url, headers={"Range": "bytes=0-9"}, timeout=10)
    assert denied.status_code == 403, denied.text
    assert denied.json()["errorCode"] == "PERMISSION_DENIED"
    assert len(served.direct) == before  # Starlette answered it, with its error


def _raw(port: int, request: bytes, expect: int) -> tuple[list[bytes], bool]:
    """Send ``request`` (one or several pipelined heads) and read ``expect`` responses; whether the
    server closed the connection afterwards."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        buf, answers = b"", []
        while len(answers) < expect:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(1 << 20)
                assert chunk, "the server closed before answering"
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(answers) in _heads(request):
                length = 0  # an answer to HEAD: the length of what a GET would get
            while len(buf) < length:
                chunk = sock.recv(1 << 20)
                assert chunk, "the server closed inside a body"
                buf += chunk
            answers.append(head + b"\r\n\r\n" + buf[:length])
            buf = buf[length:]
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return answers, closed


def _heads(request: bytes) -> set[int]:
    """Indexes of the HEAD requests among pipelined ones (their answers have no body)."""
    heads = [part for part in request.split(b"\r\n\r\n") if part]
    return {i for i, part in enumerate(heads) if part.startswith(b"HEAD ")}


def test_pipelined_requests_are_answered_in_order(lab: dict[str, Any]) -> None:
    served: _Served = lab["plain"]
    url, data = _signed_url(served, lab["token"]), lab["bytes"]
    target = url.split(str(served.port), 1)[1].encode()
    assert requests.head(url, timeout=10).status_code == 200  # remembered: the rest may go direct
    host = f"Host: 127.0.0.1:{served.port}\r\n".encode()
    request = (
        b"GET " + target + b" HTTP/1.1\r\n" + host + b"\r\n"
        b"HEAD " + target + b" HTTP/1.1\r\n" + host + b"\r\n"
        b"GET " + target + b" HTTP/1.1\r\n" + host + b"Range: bytes=10-19\r\n\r\n"
        b"GET /delta-sharing/shares HTTP/1.1\r\n" + host + b"\r\n"
    )
    answers, closed = _raw(served.port, request, 4)
    assert answers[0].startswith(b"HTTP/1.1 200") and answers[0].endswith(data)
    assert answers[1].startswith(b"HTTP/1.1 200") and answers[1].endswith(b"\r\n\r\n")
    assert answers[2].startswith(b"HTTP/1.1 206") and answers[2].endswith(data[10:20])
    assert answers[3].startswith(b"HTTP/1.1 401")  # the protocol route after them, no token
    assert not closed


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_connection_close_is_honoured(lab: dict[str, Any], version: bytes) -> None:
    served: _Served = lab["plain"]
    url = _signed_url(served, lab["token"])
    target = url.split(str(served.port), 1)[1].encode()
    assert requests.head(url, timeout=10).status_code == 200
    before = len(served.direct)
    close = b"Connection: close\r\n" if version == b"HTTP/1.1" else b""
    request = b"GET " + target + b" " + version + b"\r\nRange: bytes=0-9\r\n" + close + b"\r\n"
    answers, closed = _raw(served.port, request, 1)
    assert answers[0].startswith(b"HTTP/1.1 206") and b"connection: close" in answers[0].lower()
    assert closed and len(served.direct) == before + 1


def test_a_file_gone_underneath_gets_starlettes_404(lab: dict[str, Any], tmp_path: Path) -> None:
    served: _Served = lab["plain"]
    url = _signed_url(served, lab["token"])
    assert requests.head(url, timeout=10).status_code == 200  # remembered
    table = next(p for p in (served.home.parent / "blobs").glob("*.parquet"))
    moved = tmp_path / table.name
    table.rename(moved)
    try:
        before = len(served.direct)
        gone = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=10)
        assert gone.status_code == 404 and gone.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
        assert len(served.direct) == before
    finally:
        moved.rename(table)


@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_clients_that_leave_mid_stream_break_nothing(lab: dict[str, Any], kind: str) -> None:
    served: _Served = lab[kind]
    url = _signed_url(served, lab["token"])
    verify = served.ca or True
    assert requests.head(url, timeout=10, verify=verify).status_code == 200
    before = len(served.direct)
    target = url.split(str(served.port), 1)[1].encode()
    for _ in range(5):  # each leaves after the head: the server sees it while sending or pacing
        raw = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        sock = raw
        if served.ca:
            sock = ssl.create_default_context(cafile=served.ca).wrap_socket(
                raw, server_hostname="127.0.0.1"
            )
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
    assert len(served.direct) == before + 5
    time.sleep(0.5)  # the server's side of the last ones ends (a failure would be logged)
    # the server goes on answering others at once
    assert requests.head(url, timeout=10, verify=verify).status_code == 200
