"""The audit is durable before a response is complete: SIGKILL under load loses no row of a response a
client received; refused tokens the catalog knows are audited under their recipient."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import requests

from helpers.catalog import Catalog
from tests.server.minilab import running_minilab

PATHS = [
    ("GET", "/shares"),
    ("GET", "/shares/retail/schemas/core/tables/sales/metadata"),
    ("POST", "/shares/retail/schemas/core/tables/sales/query"),
    ("POST", "/shares/regional/schemas/regional/tables/sales/query"),
    ("GET", "/shares/retail/schemas/core/tables/events/changes?startingVersion=0"),
]


def test_sigkill_under_load_loses_no_received_response(tmp_path: Path) -> None:
    with running_minilab(tmp_path / "home") as lab:
        assert lab.server is not None
        received: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            session = requests.Session()
            seq = 0
            while not stop.is_set():
                method, path = PATHS[seq % len(PATHS)]
                agent = f"killtest-{n}-{seq}"
                seq += 1
                headers = {**lab.auth(), "User-Agent": agent}
                try:
                    if method == "POST":
                        r = session.post(lab.base + path, json={}, headers=headers, timeout=10)
                    else:
                        r = session.get(lab.base + path, headers=headers, timeout=10)
                    _ = r.content  # the whole body (a stream: up to its last chunk)
                except requests.RequestException:
                    if stop.is_set() or lab.server.process.poll() is not None:
                        return
                    continue
                if r.status_code == 200:
                    with lock:
                        received.append(agent)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        lab.server.process.send_signal(signal.SIGKILL)
        lab.server.process.wait()
        stop.set()
        for t in threads:
            t.join(20)
        assert len(received) > 50, f"too little load ({len(received)} responses)"
        cat = Catalog(lab.home / "catalog.db")
        try:
            audited = {e.user_agent for e in cat.audit_events()}
        finally:
            cat.close()
        missing = [a for a in received if a not in audited]
        assert not missing, (
            f"{len(missing)} of {len(received)} received responses have no audit row"
        )


def test_refused_known_tokens_are_audited_under_their_recipient(tmp_path: Path) -> None:
    with running_minilab(tmp_path / "home") as lab:
        assert lab.server is not None
        old = lab.tokens["alice"]
        lab.catalog.rotate_token("alice", 0)  # the old token expires now
        r = requests.get(
            f"{lab.base}/shares",
            headers={"Authorization": f"Bearer {old}", "User-Agent": "rotated"},
            timeout=10,
        )
        assert r.status_code == 401 and "expired" in r.json()["message"]
        bob = lab.tokens["bob"]
        lab.catalog.revoke_tokens("bob")
        r = requests.get(
            f"{lab.base}/shares",
            headers={"Authorization": f"Bearer {bob}", "User-Agent": "revoked"},
            timeout=10,
        )
        assert r.status_code == 401 and "revoked" in r.json()["message"]
        r = requests.get(
            f"{lab.base}/shares",
            headers={"Authorization": "Bearer dss_neverissued", "User-Agent": "unknown"},
            timeout=10,
        )
        assert r.status_code == 401 and "unknown" in r.json()["message"]
        # the rows are committed before the answers: no waiting needed
        by_agent = {e.user_agent: e for e in lab.catalog.audit_events()}
        assert by_agent["rotated"].recipient == "alice"
        assert by_agent["revoked"].recipient == "bob"
        assert by_agent["unknown"].recipient is None
        assert {by_agent[a].status_code for a in ("rotated", "revoked", "unknown")} == {401}
