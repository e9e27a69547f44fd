"""The failure throttle and the audit's aggregation of repeated failures are shared by the workers of a
server (``sharelab serve --workers 2``): N failures spread over both workers reach the limit at the same
total as on one worker, and the audit logs the first few of a window and counts the rest in one summary
row, whichever worker answered them.

Each test sends its failures from an address of its own in the loopback range (127.0.0.x as the client
socket's source address), so the tests never spend each other's budget. A request is aimed at one worker
by stopping the other (SIGSTOP: it accepts nothing until SIGCONT), as in :mod:`tests.test_workers`. The
module runs on both catalog backends (the workers' shared memory skips the bucket read of an address
that has not failed lately; on PostgreSQL only while the watch vouches, see ``tests/test_watch.py``).
"""

from __future__ import annotations

import http.client
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from deltalake import write_deltalake

from helpers.catalog import open_catalog
from helpers.provider import Provider
from helpers.server.audit import FAILURES_LOGGED_PER_WINDOW, failure_summary
from tests.support import RunningServer, only_worker, start_server, stop_server

pytestmark = pytest.mark.timeout(300)

BURST = 6


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test runs on the SQLite catalog and on a PostgreSQL one (see ``tests/conftest.py``)."""
    if "catalog_backend" in metafunc.fixturenames:
        metafunc.parametrize(
            "catalog_backend", ["sqlite", "postgresql"], indirect=True, scope="module"
        )


@dataclass
class Lab:
    home: Path
    server: RunningServer
    token: str

    def workers(self) -> list[psutil.Process]:
        return sorted(psutil.Process(self.server.process.pid).children(), key=lambda p: p.pid)

    def get(self, source: str, token: str, path: str = "/shares") -> tuple[int, dict[str, str]]:
        """``GET <prefix><path>`` with ``token``, sent from the loopback address ``source``."""
        host, port = self.server.url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=20, source_address=(source, 0))
        try:
            conn.request(
                "GET",
                "/delta-sharing" + path,
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
            )
            resp = conn.getresponse()
            resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, catalog_backend: str) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("throttle-shared")
    table = root / "t"
    write_deltalake(str(table), pd.DataFrame({"id": range(10)}))
    home = root / "home"
    Provider(home).sql(
        f"CREATE TABLE lab.sch.t LOCATION '{table}'; CREATE SHARE s; ALTER SHARE s ADD TABLE lab.sch.t;"
        "CREATE RECIPIENT r; GRANT SELECT ON SHARE s TO RECIPIENT r"
    )
    token = open_catalog(home).issue_token("r").token
    server = start_server(
        home,
        extra=["--workers", "2"],
        # a burst of 6, then one more failure per 100 s: nothing refills during a test
        env={"SHARELAB_AUTH_FAILURE_BURST": str(BURST), "SHARELAB_AUTH_FAILURE_RATE": "0.01"},
    )
    try:
        lab = Lab(home, server, token)
        deadline = time.monotonic() + 30
        while len(lab.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(lab.workers()) == 2
        yield lab
    finally:
        stop_server(server)


BAD = "dss_" + "x" * 43


def test_failures_spread_over_both_workers_reach_the_limit_at_the_burst(lab: Lab) -> None:
    source = "127.0.0.21"
    a, b = lab.workers()
    statuses = []
    for i in range(BURST):  # alternate: 3 failures on each worker
        with only_worker((a, b)[i % 2], lab.workers()):
            statuses.append(lab.get(source, BAD)[0])
    assert statuses == [401] * BURST
    for w in (a, b):  # the next one is refused by either worker, the guess unchecked
        with only_worker(w, lab.workers()):
            status, headers = lab.get(source, BAD)
            assert status == 429 and int(headers["retry-after"]) >= 1
            # a valid token from the throttled address is not checked either: a guess that happens
            # to be right learns nothing
            assert lab.get(source, lab.token)[0] == 429
    # another address is untouched, on both workers (its own bucket)
    for w in (a, b):
        with only_worker(w, lab.workers()):
            assert lab.get("127.0.0.22", lab.token)[0] == 200


def test_a_worker_started_again_keeps_the_count(lab: Lab) -> None:
    source = "127.0.0.23"
    a, _b = lab.workers()
    with only_worker(a, lab.workers()):
        assert [lab.get(source, BAD)[0] for _ in range(BURST)] == [401] * BURST
    os.kill(a.pid, signal.SIGKILL)  # the supervisor forks a new worker
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = lab.workers()
        if len(workers) == 2 and a.pid not in {w.pid for w in workers}:
            break
        time.sleep(0.1)
    new = [w for w in lab.workers() if w.pid != a.pid]
    assert len(new) == 2
    for w in new:
        with only_worker(w, lab.workers()):
            assert lab.get(source, BAD)[0] == 429


def _audit_of(lab: Lab, source: str) -> tuple[int, list[dict[str, Any]]]:
    """(failed audit rows of ``source`` naming no recipient, its summary rows), once committed."""
    cat = open_catalog(lab.home)
    frame = cat.audit_frame()
    rows = frame[(frame["client_address"] == source) & frame["recipient"].isna()]
    summary = [r for r in failure_summary(cat) if r["client_address"] == source]
    cat.close()
    return len(rows), summary


def test_the_audit_logs_a_few_and_counts_the_rest_across_workers(lab: Lab) -> None:
    source = "127.0.0.24"
    a, b = lab.workers()
    total = 3 * FAILURES_LOGGED_PER_WINDOW  # 401s, then 429s: all failures of one window
    for i in range(total):
        with only_worker((a, b)[i % 2], lab.workers()):
            assert lab.get(source, BAD)[0] in (401, 429)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logged, summary = _audit_of(lab, source)
        if logged + sum(r["failures"] for r in summary) >= total:
            break
        time.sleep(0.2)
    # as on one worker: the first few of the window have a row each, the rest one summary row
    assert logged == FAILURES_LOGGED_PER_WINDOW
    assert len(summary) == 1, summary
    assert summary[0]["action"] == "listShares"
    assert summary[0]["failures"] == total - FAILURES_LOGGED_PER_WINDOW
    assert summary[0]["status_code"] == 429
