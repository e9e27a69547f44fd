"""Whether a SQLite file has had a commit since a moment, told by its WAL-index header: a memory compare.

In WAL mode every commit rewrites the header at the start of the ``-shm`` file, which every connection
maps (``iChange`` counts transactions, ``mxFrame`` is the last frame; https://sqlite.org/walformat.html).
Two equal copies of those 48 bytes taken at two moments mean no commit in between, so a value read by a
statement after the first copy still holds at the second. Reading it costs no statement and no system
call, which matters on a server's event loop: a statement releases the GIL, and the audit writer's thread
takes it meanwhile.

The mapping is safe as long as this process holds a connection to the file: SQLite empties the ``-shm``
file only when it opens the database with no other connection open (its "DMS" lock), so the probe keeps
one of its own, opened before the file is mapped and never used for anything else. The map and its
descriptors are never closed: closing a descriptor drops the process's POSIX locks on the file, SQLite's
included. A file replaced underneath (another inode at the path) is noticed within
:data:`RECHECK_SECONDS` and mapped anew.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["RECHECK_SECONDS", "WalIndexProbe"]

RECHECK_SECONDS = 1.0
"""How often the probe checks that the path is still the file it mapped."""

_HEADER_BYTES = 48  # the first copy of the WAL-index header
_IS_INIT = 12  # its isInit byte: 0 until the header is valid
_MAPS: dict[tuple[int, int], mmap.mmap] = {}
_FDS: list[int] = []
_MAPS_LOCK = threading.Lock()
_KEPT: list[Any] = []
"""Connections given up: kept referenced, never closed (in a forked child closing would drop the parent's
locks)."""


class WalIndexProbe:
    """The WAL-index header of the SQLite file ``path``, for one process (it reopens after a fork)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        self._map: mmap.mmap | None = None
        self._inode: tuple[int, int] | None = None
        self._recheck = 0.0

    def header(self) -> bytes | None:
        """The header now, or None when it cannot be read (not in WAL mode, no ``-shm`` file yet,
        a header not yet valid): then only a statement tells."""
        if self._pid != os.getpid() or time.monotonic() >= self._recheck and self._replaced():
            self._open()
        found = self._map
        if found is None:
            return None
        head = found[:_HEADER_BYTES]
        return head if head[_IS_INIT] else None

    def _replaced(self) -> bool:
        self._recheck = time.monotonic() + RECHECK_SECONDS
        if _inode(self._path) == self._inode:
            return False
        self._pid = -1
        return True

    def _open(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            if self._conn is not None:
                _KEPT.append(self._conn)  # the map is shared and kept in _MAPS
            self._conn, self._map = None, None
            self._inode = _inode(self._path)
            self._recheck = time.monotonic() + RECHECK_SECONDS
            try:
                self._conn, self._map = _connect_and_map(self._path)
            except (OSError, ValueError, sqlite3.Error):  # no probe: every check is a statement
                pass
            self._pid = os.getpid()


def _connect_and_map(path: Path) -> tuple[sqlite3.Connection | None, mmap.mmap | None]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # fetchall: each statement run to its end, so no read transaction stays open (it would hold back
    # every checkpoint)
    mode = str(conn.execute("PRAGMA journal_mode").fetchall()[0][0]).lower()
    if mode != "wal":
        conn.close()
        return None, None
    conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opens the WAL index: its lock
    found = _shared_map(path.with_name(path.name + "-shm"))
    if found is None:
        conn.close()
    return (conn, found) if found is not None else (None, None)


def _shared_map(shm: Path) -> mmap.mmap | None:
    """This process's one read-only map of the ``-shm`` file ``shm``, made once and never closed.

    Closing any descriptor of a file drops *every* POSIX lock the process holds on it, SQLite's own
    included (its DMS lock, which keeps others from emptying the file under our map, and its read
    marks): so the descriptor opened here and the one ``mmap`` duplicates stay open for the life of
    the process, one pair per ``-shm`` file, shared by every probe.
    """
    with _MAPS_LOCK:
        known = _MAPS.get(_inode(shm) or (-1, -1))
        if known is not None:
            return known
        try:
            fd = os.open(shm, os.O_RDONLY)
        except OSError:
            return None
        _FDS.append(fd)  # never closed (see above)
        st = os.fstat(fd)
        if st.st_size < mmap.PAGESIZE:
            return None
        found = mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        _MAPS[(st.st_dev, st.st_ino)] = found
        return found


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
