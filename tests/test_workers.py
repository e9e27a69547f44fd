"""``sharelab serve --workers N``: N processes on one port sharing the catalog, the signing key, the audit
table, one-time activation codes and the failure throttle.

Which worker accepts a connection is the kernel's choice; to aim a request at one worker the tests stop the
other (SIGSTOP: it accepts nothing until SIGCONT), so "signed by one, served by the other" is exact. The
module runs on both catalog backends (SQLite, PostgreSQL).
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import delta_sharing
import pandas as pd
import psutil
import pytest
import requests
from deltalake import write_deltalake

from helpers.catalog import open_catalog
from helpers.provider import Provider
from tests.support import RunningServer, only_worker, start_server, stop_server

pytestmark = pytest.mark.timeout(300)


@dataclass
class Lab:
    home: Path
    server: RunningServer
    token: str

    @property
    def base(self) -> str:
        return self.server.url + "/delta-sharing"

    def get(self, path: str, token: str | None = None, **kw: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", "Connection": "close"}
        return requests.get(self.base + path, headers=headers, timeout=20, **kw)  # type: ignore[arg-type]

    def query(self) -> list[dict[str, object]]:
        resp = requests.post(
            self.base + "/shares/s/schemas/sch/tables/t/query",
            headers={"Authorization": f"Bearer {self.token}", "Connection": "close"},
            json={},
            timeout=20,
        )
        resp.raise_for_status()
        lines = [json.loads(x) for x in resp.text.splitlines() if x.strip()]
        return [x["file"] for x in lines if "file" in x]

    def workers(self) -> list[psutil.Process]:
        return sorted(psutil.Process(self.server.process.pid).children(), key=lambda p: p.pid)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, catalog_backend: str) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("workers")
    table = root / "t"
    write_deltalake(
        str(table), pd.DataFrame({"id": range(100), "v": [i * 0.5 for i in range(100)]})
    )
    write_deltalake(
        str(table), pd.DataFrame({"id": range(100, 150), "v": [1.0] * 50}), mode="append"
    )
    home = root / "home"
    Provider(home).sql(
        f"CREATE TABLE lab.sch.t LOCATION '{table}'; CREATE SHARE s; ALTER SHARE s ADD TABLE lab.sch.t;"
        "CREATE RECIPIENT r; GRANT SELECT ON SHARE s TO RECIPIENT r"
    )
    token = open_catalog(home).issue_token("r").token
    server = start_server(
        home,
        extra=["--workers", "2"],
        env={"SHARELAB_AUTH_FAILURE_BURST": "5", "SHARELAB_AUTH_FAILURE_RATE": "0.01"},
    )
    try:
        lab = Lab(home, server, token)
        deadline = time.monotonic() + 30
        while len(lab.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield lab
    finally:
        stop_server(server)


def test_two_workers_share_the_port_and_the_signing_key(lab: Lab) -> None:
    a, b = lab.workers()
    with only_worker(a, [a, b]):
        files = lab.query()  # URLs signed by worker a
    assert len(files) == 2
    with only_worker(b, [a, b]):
        got = pd.concat(
            pd.read_parquet(io.BytesIO(requests.get(str(f["url"]), timeout=20).content))
            for f in files
        )
    assert sorted(got["id"]) == list(range(150))


def test_revocation_through_the_catalog_is_refused_by_every_worker_at_once(lab: Lab) -> None:
    cat = open_catalog(lab.home)
    cat.create_recipient("r2")
    cat.grant("s", "r2")
    extra = cat.issue_token("r2").token
    a, b = lab.workers()
    for w in (a, b):
        with only_worker(w, [a, b]):
            assert lab.get("/shares/s/schemas", token=extra).status_code == 200
    cat.revoke("s", "r2")  # the grant first: refused by both, the token still valid
    for w in (a, b):
        with only_worker(w, [a, b]):
            assert lab.get("/shares/s/schemas", token=extra).status_code in (403, 404)
            assert lab.get("/shares", token=extra).status_code == 200
    cat.revoke_tokens("r2")
    for w in (a, b):
        with only_worker(w, [a, b]):
            assert lab.get("/shares", token=extra).status_code == 401
            assert lab.get("/shares").status_code == 200  # r's token is untouched


def test_a_one_time_activation_code_is_redeemed_once_across_workers(lab: Lab) -> None:
    code = open_catalog(lab.home).create_activation("r")
    url = f"{lab.base}/activation/{code}"

    def redeem(_: int) -> int:
        headers = {"Connection": "close", "Accept": "application/json"}
        return requests.get(url, headers=headers, timeout=20).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(redeem, range(8)))
    assert codes.count(200) == 1, codes


def test_failure_throttle_counts_across_workers(lab: Lab) -> None:
    # earlier tests spent some of loopback's budget: start from a full bucket (it lives in the catalog)
    open_catalog(lab.home).db.write(lambda c: c.execute("DELETE FROM throttle_buckets"))
    a, b = lab.workers()
    bad = "dss_" + "x" * 43
    with only_worker(a, [a, b]):
        assert [lab.get("/shares", token=bad).status_code for _ in range(5)] == [401] * 5
    with only_worker(b, [a, b]):  # the other worker knows: the burst of 5 is spent
        resp = lab.get("/shares", token=bad)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    open_catalog(lab.home).db.write(lambda c: c.execute("DELETE FROM throttle_buckets"))


def test_audit_of_both_workers_lands_in_one_table(lab: Lab) -> None:
    a, b = lab.workers()
    before = len(open_catalog(lab.home).audit_frame())
    for w in (a, b):
        with only_worker(w, [a, b]):
            for _ in range(3):
                assert lab.get("/shares/s/schemas").status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        frame = open_catalog(lab.home).audit_frame()
        if len(frame) >= before + 6:
            break
        time.sleep(0.2)
    assert len(frame) >= before + 6


def test_a_killed_worker_is_replaced_and_recipients_keep_reading(lab: Lab) -> None:
    profile = lab.home / "r.share"
    profile.write_text(
        json.dumps(
            {"shareCredentialsVersion": 1, "endpoint": lab.base + "/", "bearerToken": lab.token}
        )
    )
    a, b = lab.workers()
    os.kill(a.pid, signal.SIGKILL)
    frames = [delta_sharing.load_as_pandas(f"{profile}#s.sch.t") for _ in range(3)]
    assert all(len(f) == 150 for f in frames)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = lab.workers()
        if len(now) == 2 and a.pid not in [p.pid for p in now]:
            break
        time.sleep(0.2)
    assert len(lab.workers()) == 2 and a.pid not in [p.pid for p in lab.workers()]
    assert len(delta_sharing.load_as_pandas(f"{profile}#s.sch.t")) == 150


def test_workers_option_is_checked_and_the_default_fits_the_machine(
    lab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.server.workers import default_workers
    from tests.support import sharelab

    run = sharelab(lab_home, "serve", "--port", "0", "--workers", "0")
    assert run.returncode == 1 and "--workers" in run.stderr and "1 to 64" in run.stderr
    assert "Traceback" not in run.stderr
    monkeypatch.delenv("SHARELAB_WORKERS", raising=False)
    assert default_workers() == max(1, min(2, os.cpu_count() or 1))
    monkeypatch.setenv("SHARELAB_WORKERS", "3")
    assert default_workers() == 3
