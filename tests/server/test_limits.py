"""Resource limits of the real server: body size (413), request-head timeout, connection cap,
per-address throttling of failed authentications and activations (429 + Retry-After), failures
aggregated in the audit, and audit retention.

One private server (:mod:`tests.server.minilab`) with small limits set through the environment.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from helpers.catalog import AuditEvent, Catalog
from helpers.server.audit import failure_summary
from tests.server.minilab import MiniLab, running_minilab

ENV = {
    "SHARELAB_MAX_BODY_BYTES": "65536",
    "SHARELAB_HEADER_TIMEOUT": "2",
    "SHARELAB_MAX_CONNECTIONS": "350",
    "SHARELAB_AUTH_FAILURE_BURST": "10",
    "SHARELAB_AUTH_FAILURE_RATE": "1",
    "SHARELAB_AUDIT_RETENTION_DAYS": "30",
    "SHARELAB_WORKERS": "1",  # one process: the cap below is exact (with N workers each has 1/N)
}
SALES = "/shares/retail/schemas/core/tables/sales"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniLab]:
    def old_row(lab: MiniLab) -> None:  # an audit row older than the retention period
        old = datetime.now(UTC) - timedelta(days=45)
        lab.catalog.record_audit(
            [AuditEvent(action="listShares", event_time=old, recipient="alice", status_code=200)]
        )

    home = tmp_path_factory.mktemp("limits") / "home"
    with running_minilab(home, env=ENV, prepare=old_row) as lab:
        yield lab


def _wait_unthrottled(lab: MiniLab) -> None:
    """Wait until this address may authenticate again (the bucket refills at 1/s)."""
    for _ in range(40):
        r = requests.get(f"{lab.base}/shares", headers=lab.auth(), timeout=10)
        if r.status_code != 429:
            return
        time.sleep(int(r.headers.get("Retry-After", "1")))
    raise AssertionError("still throttled")


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            out += chunk
        return out


def test_body_size_limit_413(limited: MiniLab) -> None:
    lab = limited
    assert lab.server is not None
    url = f"{lab.base}{SALES}/query"
    ok = requests.post(url, json={"predicateHints": ["x" * 1000]}, headers=lab.auth(), timeout=30)
    assert ok.status_code == 200
    # declared too large: answered from Content-Length, before the body is read
    head = (
        f"POST /delta-sharing{SALES}/query HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {lab.tokens['alice']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    ).encode()
    out = _raw(lab.server.port, head + b'{"a": "')
    status, _, rest = out.partition(b"\r\n")
    assert b" 413 " in status, out[:300]
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["errorCode"] == "REQUEST_TOO_LARGE" and "65536" in body["message"]
    # chunked, no Content-Length: refused while reading
    chunk = b"x" * 8192
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(12)) + b"0\r\n\r\n"
    head = (
        f"POST /delta-sharing{SALES}/query HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {lab.tokens['alice']}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    out = _raw(lab.server.port, head + chunked)
    assert b" 413 " in out.split(b"\r\n", 1)[0], out[:300]
    # the server is fine after: the official client reads the table
    import delta_sharing

    assert len(delta_sharing.load_as_pandas(lab.url("alice", "retail", "core", "sales"))) == 46


def _dribble(port: int, head: bytes, tail: bytes, pieces: int) -> bytes:
    """Send ``head`` then ``tail`` in ``pieces`` writes (a head growing over many packets); the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        step = -(-len(tail) // pieces)
        try:
            for i in range(0, len(tail), step):
                s.sendall(tail[i : i + step])
                time.sleep(0.01)
        except (ConnectionResetError, BrokenPipeError):
            pass  # refused part-way: the answer was sent before the close
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_request_head_size_bound_431(limited: MiniLab) -> None:
    lab = limited
    assert lab.server is not None
    port = lab.server.port
    get = b"GET /delta-sharing/shares HTTP/1.1\r\nHost: x\r\n"
    auth = f"Authorization: Bearer {lab.tokens['alice']}\r\n".encode()
    for out in (
        _raw(port, get + b"X-Big: " + b"a" * (20 * 1024) + b"\r\n\r\n"),  # whole, in one write
        _dribble(port, get + b"X-Big: ", b"a" * (40 * 1024), 40),  # a header that never ends
        _dribble(port, get, b"".join(b"X-%d: %s\r\n" % (i, b"v" * 90) for i in range(300)), 30),
    ):
        status, _, rest = out.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 431 "), out[:300]
        body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
        assert body["errorCode"] == "REQUEST_TOO_LARGE" and "16384" in body["message"]
    # just under the bound (16 KiB of request line + headers) is served, also with a body in the
    # same write and pipelined behind another request on one connection
    near = get + auth + b"X-Big: " + b"a" * (15 * 1024) + b"\r\n\r\n"
    out = _raw(port, near.replace(b"HTTP/1.1", b"HTTP/1.0"))  # 1.0: the server closes after it
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    query = json.dumps({"predicateHints": ["x" * 30000]}).encode()
    post = (
        f"POST /delta-sharing{SALES}/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(query)}\r\nConnection: close\r\n"
    ).encode()
    out = _raw(port, get + auth + b"\r\n" + post + auth + b"\r\n" + query)
    assert out.count(b"HTTP/1.1 200 ") == 2 and b" 431 " not in out, out[:300]


def test_half_sent_headers_are_closed_and_connections_capped(limited: MiniLab) -> None:
    lab = limited
    assert lab.server is not None
    socks = []
    try:
        for _ in range(300):  # half a request head each, from a client without a token
            s = socket.create_connection(("127.0.0.1", lab.server.port), timeout=10)
            s.sendall(b"GET /delta-sharing/shares HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        extra = []
        for _ in range(60):  # 300 + 60 > the cap of 350: the last ones are refused at once
            s = socket.create_connection(("127.0.0.1", lab.server.port), timeout=10)
            extra.append(s)
        time.sleep(0.5)
        refused = 0
        for s in extra:
            s.settimeout(0.2)
            try:
                data = s.recv(4096)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                assert b"retry-after" in data.lower()
                refused += 1
        assert refused >= 10, refused
        for s in extra:
            s.close()
        # while the slow clients hold their connections, a real request is served
        r = requests.get(f"{lab.base}/shares", headers=lab.auth(), timeout=10)
        assert r.status_code == 200
        started = time.monotonic()
        closed = 0
        for s in socks:
            s.settimeout(max(0.1, 6 - (time.monotonic() - started)))
            try:
                data = s.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            closed += data == b""
        assert closed == 300, f"only {closed} of 300 half-sent requests were closed"
        assert time.monotonic() - started < 6
    finally:
        for s in socks:
            s.close()
    r = requests.get(f"{lab.base}/shares", headers=lab.auth(), timeout=10)
    assert r.status_code == 200


def test_failed_authentications_are_throttled_and_aggregated(limited: MiniLab) -> None:
    lab = limited
    assert lab.server is not None
    _wait_unthrottled(lab)
    statuses = []
    for i in range(40):
        r = requests.get(
            f"{lab.base}/shares", headers={"Authorization": f"Bearer dss_guess{i}"}, timeout=10
        )
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["errorCode"] == "RESOURCE_EXHAUSTED"
    assert statuses[:10] == [401] * 10
    assert set(statuses[11:]) == {429}, statuses
    # while throttled, even a valid token from this address gets 429 (a guess is never checked)
    r = requests.get(f"{lab.base}/shares", headers=lab.auth(), timeout=10)
    assert r.status_code == 429
    wait = int(r.headers["Retry-After"])
    time.sleep(wait)
    r = requests.get(f"{lab.base}/shares", headers=lab.auth(), timeout=10)
    assert r.status_code == 200
    # activation codes share the address's bucket
    for i in range(12):
        r = requests.get(f"{lab.base}/activation/guess{i}", timeout=10)
        if r.status_code == 429:
            break
        assert r.status_code == 404
    else:
        raise AssertionError("activation guesses were never throttled")
    _wait_unthrottled(lab)

    # the audit: a few rows per address and action, the rest counted in the summary
    time.sleep(0.5)  # durable in the journal already; the catalog gets them in ~20 ms batches
    cat = Catalog(lab.home / "catalog.db")
    try:
        rows = [
            e
            for e in cat.audit_events()
            if e.action == "listShares" and e.status_code in (401, 429) and e.recipient is None
        ]
        summary = [s for s in failure_summary(cat) if s["action"] == "listShares"]
    finally:
        cat.close()
    assert 0 < len(rows) <= 10  # per window: 5 individual rows (the flood may span two windows)
    counted = sum(s["failures"] for s in summary)
    # every failure response of the flood (40 + the valid token's 429) has a row or a count
    assert len(rows) + counted >= 41, (len(rows), counted)
    assert all(s["client_address"] == "127.0.0.1" for s in summary)


def test_audit_retention_deleted_old_rows(limited: MiniLab) -> None:
    _wait_unthrottled(limited)  # one audited request of this test's own (answered 200)
    cat = Catalog(limited.home / "catalog.db")
    try:
        events = cat.audit_events()
        for _ in range(50):  # the writer commits its batches in the background
            if events:
                break
            time.sleep(0.1)
            events = cat.audit_events()
    finally:
        cat.close()
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert events, "the server audits"
    assert all(e.event_time > cutoff for e in events), "rows older than 30 days were deleted"


def test_limits_from_environment_are_checked() -> None:
    from helpers.exceptions import InvalidArgumentError
    from helpers.server.limits import ServerLimits

    limits = ServerLimits.from_env(
        {"SHARELAB_MAX_BODY_BYTES": "4096", "SHARELAB_HEADER_TIMEOUT": "1.5"}
    )
    assert limits.max_body_bytes == 4096 and limits.header_timeout_seconds == 1.5
    with pytest.raises(InvalidArgumentError, match="SHARELAB_MAX_CONNECTIONS"):
        ServerLimits.from_env({"SHARELAB_MAX_CONNECTIONS": "many"})
    with pytest.raises(InvalidArgumentError):
        ServerLimits.from_env({"SHARELAB_AUTH_FAILURE_RATE": "-1"})


def test_throttle_bucket_refills() -> None:
    from helpers.server.throttle import FailureThrottle

    now = [100.0]
    t = FailureThrottle(burst=3, rate=0.5, clock=lambda: now[0])
    for _ in range(3):
        assert t.retry_after("a") == 0
        t.failed("a")
    assert t.retry_after("a") == 2 and t.retry_after("b") == 0
    now[0] += 2
    assert t.retry_after("a") == 0


def _failure(i: int, address: str = "198.51.100.7") -> AuditEvent:
    return AuditEvent(
        action="listShares",
        event_time=datetime.now(UTC),
        status_code=401,
        client_address=address,
        user_agent=f"replay-{i}",
    )


def test_failures_journaled_by_a_killed_server_are_counted_at_replay(tmp_path: Path) -> None:
    """A failure's row-or-count is decided at its commit: lines a killed server left in its journal are
    logged and counted by the server that replays them, in the window shared by all processes."""
    import subprocess
    import sys

    from helpers.server.audit import FAILURES_LOGGED_PER_WINDOW, AuditWriter

    journal_dir = tmp_path / "server"
    Catalog(tmp_path / "catalog.db").close()
    n = FAILURES_LOGGED_PER_WINDOW + 4
    script = (
        "import os, sys\n"
        "from helpers.catalog import Catalog\n"
        "from helpers.server.audit_journal import AuditJournal\n"
        "from tests.server.test_limits import _failure\n"
        f"j = AuditJournal(__import__('pathlib').Path({str(journal_dir)!r}), "
        f"Catalog({str(tmp_path / 'catalog.db')!r}))\n"
        f"for i in range({n}): j.append('failure', _failure(i), lambda seq: None)\n"
        "os._exit(0)  # killed: nothing committed\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
    cat = Catalog(tmp_path / "catalog.db")
    writer = AuditWriter(cat, journal_dir=journal_dir)
    writer.start()  # replays the dead process's journal
    writer.stop()
    try:
        rows = [e for e in cat.audit_events() if e.client_address == "198.51.100.7"]
        summary = [s for s in failure_summary(cat) if s["client_address"] == "198.51.100.7"]
    finally:
        cat.close()
    assert len(rows) == FAILURES_LOGGED_PER_WINDOW
    assert [s["failures"] for s in summary] == [n - FAILURES_LOGGED_PER_WINDOW]


def test_failure_marks_are_seen_by_forked_processes(tmp_path: Path) -> None:
    """The shared-memory marks (made before the workers fork) let a worker skip the catalog read only
    for an address that has not failed lately in any worker: a mark made in a forked child is seen by
    the parent; an address in another slot is not marked; a throttle reads through a marked slot."""
    import os

    from helpers.server.cluster import CatalogThrottle
    from helpers.server.throttle import FailureMarks

    marks = FailureMarks()
    assert marks.last("203.0.113.9") == 0.0
    pid = os.fork()
    if pid == 0:  # the "other worker"
        marks.mark("203.0.113.9", 1234.5)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and marks.last("203.0.113.9") == 1234.5
    marks.mark("203.0.113.9", 1000.0)  # an older mark never hides a later one
    assert marks.last("203.0.113.9") == 1234.5

    cat = Catalog(tmp_path / "catalog.db")
    try:
        throttle = CatalogThrottle(cat.db, burst=2, rate=0.01)
        for _ in range(2):
            throttle.failed("203.0.113.9")
        assert throttle.retry_after("203.0.113.9") >= 1
        assert throttle.retry_after("203.0.113.77") == 0
    finally:
        cat.close()
