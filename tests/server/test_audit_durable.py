"""The audit is durable before a response is complete: SIGKILL under load loses no row of a response a
client received; refused tokens the catalog knows are audited under their recipient."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import requests

from helpers.catalog import Catalog
from tests.server.minilab import running_minilab
from tests.support import start_server


def _rows_by_agent(catalog: Catalog, agents: set[str]) -> dict[str, Any]:
    """The audit rows by user agent, once every one of ``agents`` is there (the writer commits in
    batches of ~20 ms; the rows are durable in the journal already)."""
    deadline = time.monotonic() + 10
    while True:
        rows = {e.user_agent: e for e in catalog.audit_events()}
        if agents <= set(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


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
        # the rows live in the killed server's journal; the next server recovers them at start-up
        old = set((lab.home / "server").glob("audit-*.journal"))
        assert old
        lab.server = start_server(lab.home)
        left = old & set((lab.home / "server").glob("audit-*.journal"))
        assert not left, "the dead server's journal was replayed and removed"
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
        by_agent = _rows_by_agent(lab.catalog, {"rotated", "revoked", "unknown"})
        assert by_agent["rotated"].recipient == "alice"
        assert by_agent["revoked"].recipient == "bob"
        assert by_agent["unknown"].recipient is None
        assert {by_agent[a].status_code for a in ("rotated", "revoked", "unknown")} == {401}


def test_a_journal_of_either_line_format_is_replayed(tmp_path: Path) -> None:
    """A journal left by a killed server is replayed whether its rows are lists of fields (this version)
    or dicts of them (earlier versions); a line cut by the crash, or one it cannot read, is skipped; the
    journal is removed."""
    import json

    from helpers.server.audit import AuditWriter

    journal_dir = tmp_path / "server"
    journal_dir.mkdir()
    Catalog(tmp_path / "catalog.db").close()
    row = {
        "action": "downloadFile",
        "event_time": 1_790_000_000.25,
        "recipient": "r",
        "share": "s",
        "schema": "sch",
        "table": "t",
        "version": 3,
        "start_version": None,
        "end_version": None,
        "num_files": 1,
        "has_predicate_hints": False,
        "has_limit_hint": False,
        "status_code": 200,
        "user_agent": "old-format",
        "client_address": "127.0.0.1",
        "duration_ms": 0.5,
        "response_format": None,
    }
    listed = [*row.values()]
    listed[list(row).index("user_agent")] = "new-format"
    lines = [
        json.dumps({"q": 1, "k": "event", "d": row}),
        json.dumps({"q": 2, "k": "event", "d": listed}),
        json.dumps({"q": 3, "k": "event", "d": listed[:5]}),  # not a row this version reads
        '{"q": 4, "k": "event", "d": ["downl',  # cut by the crash
    ]
    dead = journal_dir / "audit-1-deadbeef.journal"
    dead.write_text("\n".join(lines))
    cat = Catalog(tmp_path / "catalog.db")
    writer = AuditWriter(cat, journal_dir=journal_dir)
    writer.start()
    writer.stop()
    try:
        rows = {e.user_agent: e for e in cat.audit_events()}
    finally:
        cat.close()
    assert set(rows) == {"old-format", "new-format"}
    assert rows["new-format"].table == "t" and rows["new-format"].version == 3
    assert rows["old-format"].event_time == rows["new-format"].event_time
    assert not dead.exists()
