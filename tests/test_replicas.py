"""Two sharelab replicas behind nginx on loopback, sharing a PostgreSQL catalog and one signing key.

The topology of ``docker/compose.replicas.yml``, with Debian's ``postgresql`` and ``nginx`` packages (the
README's test command installs them as root; elsewhere the module skips and says why): each replica has a
lab home of its own, ``$SHARELAB_CATALOG_URL`` names one PostgreSQL schema, ``$SHARELAB_SIGNING_KEY_FILE``
one key, ``--public-url`` the proxy, and ``$SHARELAB_ACCEL_REDIRECT`` hands downloads to nginx.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
import requests
from deltalake import write_deltalake

from helpers.catalog import Catalog
from helpers.provider import Provider
from helpers.server.securelink import write_conf
from tests.nginx import NGINX, render_nginx, start_nginx
from tests.support import RunningServer, free_port, start_server, stop_server

pytestmark = [pytest.mark.replicas, pytest.mark.timeout(300)]


@dataclass
class Replicas:
    url: str  # the catalog URL
    a: RunningServer
    b: RunningServer
    proxy: str  # http://127.0.0.1:PORT
    profile: Path
    token: str
    table: Path

    def catalog(self) -> Catalog:
        return Catalog(self.a.home, url=self.url)

    def query(self, server: RunningServer, agent: str = "replica-test") -> list[dict[str, object]]:
        resp = requests.post(
            f"{server.url}/delta-sharing/shares/s/schemas/sch/tables/t/query",
            headers={"Authorization": f"Bearer {self.token}", "User-Agent": agent},
            json={},
            timeout=20,
        )
        resp.raise_for_status()
        lines = [json.loads(x) for x in resp.text.splitlines() if x.strip()]
        return [x["file"] for x in lines if "file" in x]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, pg_cluster: object) -> Iterator[Replicas]:
    if NGINX is None:
        pytest.skip(
            "nginx not found: install Debian's nginx-light (./run-demo.sh test does it as root)"
        )
    root = tmp_path_factory.mktemp("replicas")
    url = pg_cluster.url(f"replicas_{uuid.uuid4().hex[:8]}")  # type: ignore[attr-defined]
    key = root / "secret.key"
    key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)
    table = root / "t"
    for n in range(4):  # 4 files
        write_deltalake(
            str(table),
            pd.DataFrame({"id": range(n * 250, (n + 1) * 250), "v": [float(n)] * 250}),
            mode="append",
        )
    proxy_port = free_port()
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = {
        "SHARELAB_CATALOG_URL": url,
        "SHARELAB_SIGNING_KEY_FILE": str(key),
        "SHARELAB_ACCEL_REDIRECT": "/_sharelab_files",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ["SHARELAB_CATALOG_URL"] = url
    started: list[RunningServer] = []
    nginx: subprocess.Popen[bytes] | None = None
    try:
        home_a, home_b = root / "home_a", root / "home_b"
        Provider(home_a).sql(
            f"CREATE TABLE lab.sch.t LOCATION '{table}'; CREATE SHARE s; "
            "ALTER SHARE s ADD TABLE lab.sch.t; CREATE RECIPIENT r; GRANT SELECT ON SHARE s TO RECIPIENT r"
        )
        token = Catalog(home_a, url=url).issue_token("r").token
        for home in (home_a, home_b):
            started.append(
                start_server(home, extra=["--workers", "1", "--public-url", proxy], env=env)
            )
        prefix = root / "nginx"
        prefix.mkdir()
        link_conf = write_conf(key.read_bytes(), prefix / "secure_link.conf")
        conf = render_nginx(prefix, proxy_port, [s.port for s in started], link_conf)
        nginx = start_nginx(prefix, conf, proxy)
        profile = root / "r.share"
        profile.write_text(
            json.dumps(
                {
                    "shareCredentialsVersion": 1,
                    "endpoint": proxy + "/delta-sharing/",
                    "bearerToken": token,
                }
            )
        )
        yield Replicas(url, started[0], started[1], proxy, profile, token, table)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        for s in started:
            stop_server(s)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_url_signed_by_one_replica_is_served_by_the_other(replicas: Replicas) -> None:
    files = replicas.query(replicas.a)
    assert len(files) == 4 and all(str(f["url"]).startswith(replicas.proxy) for f in files)
    path_and_query = str(files[0]["url"])[len(replicas.proxy) :]
    direct = requests.get(
        replicas.b.url + path_and_query, timeout=20
    )  # replica b checks a's signature
    assert direct.status_code == 200
    assert direct.headers["X-Accel-Redirect"].startswith("/_sharelab_files/") and not direct.content
    frames = [
        pd.read_parquet(io.BytesIO(requests.get(str(f["url"]), timeout=20).content)) for f in files
    ]
    assert sorted(pd.concat(frames)["id"]) == list(range(1000))  # nginx streamed the bytes
    ranged = requests.get(str(files[0]["url"]), headers={"Range": "bytes=0-3"}, timeout=20)
    assert ranged.status_code == 206 and ranged.content == b"PAR1"
    forged = str(files[0]["url"]).replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(forged, timeout=20).status_code == 403


def test_revoking_is_refused_by_both_replicas_at_once(replicas: Replicas) -> None:
    cat = replicas.catalog()
    cat.create_recipient("r2")
    cat.grant("s", "r2")
    token = cat.issue_token("r2").token
    headers = {"Authorization": f"Bearer {token}"}
    for server in (replicas.a, replicas.b):
        assert requests.get(f"{server.endpoint}shares/s/schemas", headers=headers, timeout=20).ok
    cat.revoke("s", "r2")
    for server in (replicas.a, replicas.b):
        resp = requests.get(f"{server.endpoint}shares/s/schemas", headers=headers, timeout=20)
        assert resp.status_code in (403, 404)
    cat.revoke_tokens("r2")
    for server in (replicas.a, replicas.b):
        resp = requests.get(f"{server.endpoint}shares", headers=headers, timeout=20)
        assert resp.status_code == 401


def test_the_audit_of_both_replicas_lands_in_one_table(replicas: Replicas) -> None:
    replicas.query(replicas.a, agent="via-replica-a")
    replicas.query(replicas.b, agent="via-replica-b")
    deadline = time.monotonic() + 20
    agents: set[str] = set()
    while time.monotonic() < deadline:
        frame = replicas.catalog().audit_frame()
        agents = set(frame["user_agent"].dropna())
        if {"via-replica-a", "via-replica-b"} <= agents:
            break
        time.sleep(0.2)
    assert {"via-replica-a", "via-replica-b"} <= agents


def test_one_replica_killed_recipients_keep_reading(replicas: Replicas) -> None:
    results: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                results.append(len(delta_sharing.load_as_pandas(f"{replicas.profile}#s.sch.t")))
            except Exception as exc:  # noqa: BLE001 - counted: the test allows only in-flight ones
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(1.0)
        os.kill(replicas.a.process.pid, signal.SIGKILL)
        replicas.a.process.wait(timeout=10)
        killed_at = len(results) + len(errors)
        time.sleep(3.0)
    finally:
        stop.set()
        thread.join(timeout=60)
    after = results[killed_at:]
    assert len(after) >= 2 and set(after) == {1000}
    assert len(errors) <= 1, errors  # at most the load in flight when the replica died
