"""The SQLite access generation without a statement (helpers.catalog.backends.walindex): while the WAL-index
header is unchanged the last value is answered again; any commit, from any connection or process, is seen
by the next call; a file that is not in WAL mode, or one replaced underneath, falls back to statements."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import helpers.catalog.backends.walindex as walindex
from helpers.catalog import AuditEvent, open_catalog
from helpers.catalog.generation import current_generation
from tests.support import count_generation_reads


def test_no_statement_until_a_commit_and_every_commit_seen_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = open_catalog(tmp_path / "home")
    first = cat.access_generation()
    reads = count_generation_reads(monkeypatch)
    for _ in range(50):
        assert cat.access_generation() == first
    assert len(reads) <= 1, "an unchanged file needs no statement"
    # a change by another process: the next call sees it
    code = (
        "from helpers.catalog import open_catalog; "
        f"c = open_catalog({str(tmp_path / 'home')!r}); c.create_recipient('other'); c.close()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert cat.access_generation() > first
    # and one through another Catalog object of this process (its own connections)
    seen = cat.access_generation()
    other = open_catalog(tmp_path / "home")
    other.create_recipient("third")
    assert cat.access_generation() > seen
    # a commit that bumps nothing (an audit row) costs a read, not a wrong answer
    now = cat.access_generation()
    before = len(reads)
    other.record_audit([AuditEvent("downloadFile")])
    assert cat.access_generation() == now and len(reads) == before + 1
    other.close()
    cat.close()


def test_inside_a_transaction_the_snapshot_decides(tmp_path: Path) -> None:
    cat = open_catalog(tmp_path / "home")
    start = cat.access_generation()
    other = open_catalog(tmp_path / "home")

    def body(conn: sqlite3.Connection) -> tuple[int | None, int | None]:
        inside = current_generation(cat.db)  # joins this snapshot
        other.create_recipient("late")  # committed after the snapshot began
        return inside, current_generation(cat.db)

    inside, again = cat.db.read(body)
    assert inside == again == start, "a read transaction keeps its snapshot's generation"
    assert cat.access_generation() > start
    other.close()
    cat.close()


def test_a_file_not_in_wal_mode_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    assert walindex.WalIndexProbe(path).header() is None
    assert walindex.WalIndexProbe(tmp_path / "missing.db").header() is None
    conn.close()


def test_a_file_replaced_underneath_is_mapped_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walindex, "RECHECK_SECONDS", 0.0)  # every call checks the path
    a, b = open_catalog(tmp_path / "a"), open_catalog(tmp_path / "b")
    for i in range(3):
        b.create_recipient(f"r{i}")  # another history: another header
    probe = walindex.WalIndexProbe(a.db.path)
    old = probe.header()
    assert old is not None and old == walindex.WalIndexProbe(a.db.path).header()
    b.close()
    replacement = tmp_path / "replacement.db"
    shutil.copy(b.db.path, replacement)  # checkpointed and closed: the whole file
    replacement.replace(a.db.path)
    open_catalog(tmp_path / "a").access_generation()  # a connection to the new file: its WAL index
    assert probe.header() != old, "the probe follows the path to the new file"
    a.close()


_PROBING = """
import sys
from helpers.catalog import open_catalog
cat = open_catalog(sys.argv[1])
first = cat.access_generation()  # the probe maps the -shm file
print("ready", flush=True)
sys.stdin.readline()  # the other process changes access meanwhile
print(cat.access_generation() - first, flush=True)
"""


def _locked_bytes(pid: int, inode: int) -> set[int]:
    """The bytes of file ``inode`` on which process ``pid`` holds a POSIX lock (``/proc/locks``)."""
    found: set[int] = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "POSIX" not in fields:
            continue
        at = fields.index("POSIX")
        if int(fields[at + 3]) != pid or int(fields[at + 4].rsplit(":", 1)[1]) != inode:
            continue
        end = fields[at + 6]
        found.update(
            range(int(fields[at + 5]), int(end) + 1 if end != "EOF" else int(fields[at + 5]) + 1)
        )
    return found


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_a_probing_process_keeps_sqlites_locks(tmp_path: Path) -> None:
    """Mapping the -shm file must not drop the process's POSIX locks on it (closing any descriptor of
    the file would): SQLite's DMS lock (byte 128) is what keeps another process from emptying the file
    under the map (SIGBUS) and its read marks keep checkpoints off pages still being read."""
    home = tmp_path / "home"
    open_catalog(home).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROBING, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        shm = (home / "catalog.db").with_name("catalog.db-shm")
        assert 128 in _locked_bytes(proc.pid, shm.stat().st_ino), "the DMS lock is held"
        other = open_catalog(home)  # another process's change is seen at once
        other.create_recipient("x")
        other.close()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert int(proc.stdout.readline()) >= 1
    finally:
        proc.kill()
        proc.wait()
