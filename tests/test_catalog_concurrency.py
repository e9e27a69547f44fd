"""Two processes (and many threads) writing the catalog at once: no lost update, no 'database is locked'."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from helpers.catalog import AuditEvent, Catalog
from helpers.catalog.rows import recipient_row

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 120

# Each worker hammers the same catalog with read-modify-write updates on one shared recipient (a lost
# update would drop a property key), creates its own recipients, toggles grants, issues tokens and appends
# audit batches. Any exception, including a leaked "database is locked", fails the worker.
WORKER = textwrap.dedent(
    """
    import sys, time, traceback
    from helpers.catalog import AuditEvent, Catalog
    db, wid, rounds, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    cat = Catalog(db)
    while time.time() < start_at:
        time.sleep(0.001)
    try:
        for i in range(rounds):
            cat.set_recipient_properties("shared", {f"w{wid}_{i}": str(i)})
            cat.create_recipient(f"r_{wid}_{i}")
            cat.grant("s", f"r_{wid}_{i}")
            if i % 2:
                cat.revoke("s", f"r_{wid}_{i}")
            cat.issue_token("shared")
            cat.record_audit([AuditEvent("queryTable", recipient=wid, version=i) for _ in range(3)])
            assert cat.shared_tables("s") == []
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    print("done", wid)
    """
)


def test_two_processes_write_at_once(lab_home: Path) -> None:
    db = lab_home / "catalog.db"
    cat = Catalog(db)
    cat.create_share("s")
    cat.create_recipient("shared")
    start_at = time.time() + 3.0  # both start after their imports, at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), wid, str(ROUNDS), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for wid in ("a", "b")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err and "done" in out

    props = cat.get_recipient("shared").properties
    expected = {f"w{w}_{i}" for w in "ab" for i in range(ROUNDS)}
    assert set(props) == expected  # no lost update
    assert len(cat.list_recipients()) == 2 * ROUNDS + 1
    assert len(cat.grants_on_share("s")) == ROUNDS  # the even rounds of both workers
    tokens = cat.list_tokens("shared")
    assert len(tokens) == 2 * ROUNDS
    assert (
        sum(t.status == "active" for t in tokens) == 2
    )  # the two-live invariant held under the race
    frame = cat.audit_frame()
    assert len(frame) == 2 * ROUNDS * 3
    assert frame.groupby("recipient").size().to_dict() == {"a": ROUNDS * 3, "b": ROUNDS * 3}
    cat.close()


def test_threads_share_one_catalog(lab_home: Path) -> None:
    """The server's threads share one Catalog object: a connection per thread, writes serialised."""
    cat = Catalog(lab_home / "catalog.db")
    cat.create_recipient("r")
    token = cat.issue_token("r").token
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                cat.set_recipient_properties("r", {f"t{n}_{i}": i})
                assert cat.authenticate(token) is not None
                cat.record_audit([AuditEvent("listShares", recipient="r")])
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cat.get_recipient("r").properties) == 6 * 40
    assert len(cat.audit_frame()) == 6 * 40
    cat.close()


def test_reader_sees_consistent_snapshots_while_writer_commits(lab_home: Path) -> None:
    """A share's entries and grants never appear half-written to a concurrent reader."""
    cat = Catalog(lab_home / "catalog.db")
    cat.create_recipient("r")
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        other = Catalog(lab_home / "catalog.db")  # like a second process: its own connections
        while not stop.is_set():
            for share in other.list_shares():
                seen.append(len(other.grants_on_share(share.name)))
        other.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(60):
            name, sid = f"s{i}", f"id{i}"

            def body(conn, name=name, sid=sid):  # share + grant in one write transaction
                recipient_row(conn, "r")
                conn.execute(
                    "INSERT INTO shares (id, name, created_at) VALUES (?, ?, 0)", (sid, name)
                )
                conn.execute(
                    "INSERT INTO grants (share_id, recipient_id, granted_at) "
                    "SELECT ?, id, 0 FROM recipients WHERE name = 'r'",
                    (sid,),
                )

            cat.db.write(body)
        # on a loaded machine the reader may not have been scheduled yet: let it look at least once
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert seen and all(n == 1 for n in seen)
    cat.close()
