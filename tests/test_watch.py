"""The watched access generation (helpers.catalog.watch): no round trip per check, and still immediate.

PostgreSQL only (on SQLite the generation is a local read and nothing is watched). A watching catalog must:
answer the generation from memory while its lease holds; see every change made through another catalog the
moment that writer's call returns (the writer waits for it); stop trusting its memory when it cannot keep
its lease (a stopped server process, a lost connection), so a revocation is never missed; and leave no
row behind when it stops.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests
from deltalake import write_deltalake

from helpers.catalog import Catalog, open_catalog
from helpers.catalog.watch import LEASE_SECONDS, start_watch, stop_watch, watched_generation
from tests.support import count_generation_reads, start_server, stop_server

pytestmark = pytest.mark.parametrize(
    "catalog_backend", ["postgresql"], indirect=True, scope="module"
)


def _watchers(cat: Catalog) -> int:
    return int(
        cat.db.read_one(lambda c: c.execute("SELECT count(*) FROM access_watchers").fetchone()[0])
    )


def _wait_trusted(cat: Catalog, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = watched_generation(cat.db)
        if found is not None:
            return found
        time.sleep(0.01)
    raise AssertionError("the watch never took its lease")


@pytest.fixture
def lab(catalog_backend: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A lab home with a shared table, its recipient and a token."""
    home = tmp_path / "home"
    write_deltalake(str(tmp_path / "t"), pa.table({"id": list(range(10))}))
    name = "w" + uuid.uuid4().hex[:8]
    cat = open_catalog(home)
    cat.register_table("lab.sch.t", str(tmp_path / "t"))
    cat.create_share(name)
    cat.add_table_to_share(name, "lab.sch.t", alias="sch.t")
    cat.create_recipient(name)
    cat.grant(name, name)
    token = cat.issue_token(name).token
    cat.close()
    yield home, name, token


def test_a_watching_catalog_checks_without_a_round_trip_and_misses_no_change(
    lab: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, name, token = lab
    watching, writer = open_catalog(home), open_catalog(home)
    start_watch(watching.db)
    try:
        _wait_trusted(watching)
        assert watching.authenticate(token) is not None
        reads = count_generation_reads(monkeypatch)
        for _ in range(50):
            assert watching.authenticate(token) is not None
            assert [s.name for s in watching.recipient_shares(name)] == [name]
        assert reads == []  # answered from the watch: no statement at all
        for i in range(10):  # every change is seen the moment the writer's call returns
            if i % 2 == 0:
                writer.revoke(name, name)
                assert watching.recipient_shares(name) == []
            else:
                writer.grant(name, name)
                assert [s.name for s in watching.recipient_shares(name)] == [name]
        writer.revoke_tokens(name)
        assert watching.authenticate(token) is None
        assert watching.access_generation() == writer.access_generation()
    finally:
        stop_watch(watching.db)
        watching.close()
        writer.close()
    with open_catalog(home) as cat:
        assert _watchers(cat) == 0  # its row went with it: writers stop waiting for it


def test_a_lost_connection_falls_back_to_reading(
    lab: tuple[Path, str, str], pg_cluster: Any
) -> None:
    """The watch's connection killed by the database: the catalog reads the counter until it is back."""
    import psycopg

    home, name, token = lab
    watching, writer = open_catalog(home), open_catalog(home)
    start_watch(watching.db)
    try:
        _wait_trusted(watching)
        with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' OR query LIKE 'UPDATE access_watchers%'"
            )
        writer.revoke_tokens(name)  # whatever the watch knows now, the answer is current
        assert watching.authenticate(token) is None
        token2 = writer.issue_token(name).token
        assert watching.authenticate(token2) is not None
        _wait_trusted(watching)  # back, and trusted again
        writer.revoke_tokens(name)
        assert watching.authenticate(token2) is None
    finally:
        stop_watch(watching.db)
        watching.close()
        writer.close()


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_stopped_server_cannot_hold_up_a_revocation_or_miss_it(
    lab: tuple[Path, str, str],
) -> None:
    """A server process frozen (SIGSTOP) holds its lease no longer than LEASE_SECONDS: the revocation
    waits for it at most about that long, and when the server runs again it refuses at once."""
    home, name, token = lab
    server = start_server(home, env={"SHARELAB_WORKERS": "1"})
    writer = open_catalog(home)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{server.endpoint}shares"
        assert requests.get(url, headers=headers, timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while _watchers(writer) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _watchers(writer) == 1
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            writer.revoke_tokens(name)
            waited = time.monotonic() - started
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert waited < LEASE_SECONDS + 1.5, waited  # not held up for longer than the lease
        assert requests.get(url, headers=headers, timeout=10).status_code == 401
        started = time.monotonic()
        writer.issue_token(name)  # the server is back: a writer waits for it only briefly
        assert time.monotonic() - started < 1.0
    finally:
        stop_server(server)
        writer.close()
    with open_catalog(home) as cat:
        assert _watchers(cat) == 0


def test_a_stalled_watch_stops_vouching_when_its_lease_ends(
    lab: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch's thread stuck (it neither renews nor reads its notifications): the writer waits for it
    at most about a lease, and the catalog no longer answers from the stale memory."""
    import threading

    from helpers.catalog import watch

    home, name, token = lab
    watching, writer = open_catalog(home), open_catalog(home)
    start_watch(watching.db)
    release = threading.Event()
    try:
        _wait_trusted(watching)
        assert watching.authenticate(token) is not None
        original = watch._Watcher._renew

        def stuck(self: Any, raw: Any, seen: int) -> int:
            release.wait(30)
            return original(self, raw, seen)

        monkeypatch.setattr(watch._Watcher, "_renew", stuck)
        time.sleep(watch.RENEW_SECONDS + 0.3)  # the thread is now inside the stuck renewal
        started = time.monotonic()
        writer.revoke_tokens(name)
        assert time.monotonic() - started < LEASE_SECONDS + 1.5
        assert watched_generation(watching.db) is None  # its lease ran out: it vouches for nothing
        assert watching.authenticate(token) is None
    finally:
        release.set()
        stop_watch(watching.db)
        watching.close()
        writer.close()


def test_the_throttle_rides_the_watch_across_replicas(lab: tuple[Path, str, str]) -> None:
    """Replica B reads no bucket for an address that has not failed (its watch vouches), learns of
    replica A's failures from the watch's ``throttle`` topic within moments, and then refuses."""
    from helpers.server.cluster import CatalogThrottle

    home, _name, _token = lab
    cat_a, cat_b = open_catalog(home), open_catalog(home)
    throttle_a = CatalogThrottle(cat_a.db, burst=2, rate=2.0)  # a window of 1.5 s
    throttle_b = CatalogThrottle(cat_b.db, burst=2, rate=2.0)
    reads: list[int] = []
    read = cat_b.db.read

    def counted(body: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return read(body, *args, **kwargs)

    cat_b.db.read = counted  # type: ignore[method-assign]
    start_watch(cat_b.db)
    try:
        _wait_trusted(cat_b)
        assert throttle_b.retry_after("10.9.0.1") == 0 and reads  # just connected: it reads
        time.sleep(1.6)  # a window after the watch (re)connected: it may trust what it hears
        reads.clear()
        assert throttle_b.retry_after("10.9.0.1") == 0 and reads == []
        throttle_a.failed("10.9.0.1")
        throttle_a.failed("10.9.0.1")  # A's burst is spent; B learns of it through the watch
        deadline = time.monotonic() + 5
        while throttle_b.retry_after("10.9.0.1") == 0:
            assert time.monotonic() < deadline, "replica B never saw replica A's failures"
            time.sleep(0.01)
        assert reads  # it read the bucket once the note came
        reads.clear()
        assert throttle_b.retry_after("10.9.0.2") == 0 and reads == []  # another address: no read
        stop_watch(cat_b.db)
        assert throttle_b.retry_after("10.9.0.2") == 0 and reads  # no watch: every check reads
    finally:
        stop_watch(cat_b.db)
        cat_a.close()
        cat_b.close()
