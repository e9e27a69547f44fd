"""The SQLite backend of the catalog's database layer: one file, the embedded default.

Every connection gets the same policy: WAL, a ``busy_timeout``, ``foreign_keys`` on and
``synchronous = NORMAL``. The catalog's own schema version is the file's ``PRAGMA user_version`` (catalog
files predate components); every other component's lives in the ``schema_components`` table.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["BUSY_TIMEOUT_MS", "COMPONENTS_TABLE", "USER_VERSION_COMPONENT", "SqliteBackend"]

#: SQLite's own wait per attempt (``PRAGMA busy_timeout``), in milliseconds.
BUSY_TIMEOUT_MS = 5000
#: The component whose version is the file's ``PRAGMA user_version`` (catalog files predate components).
USER_VERSION_COMPONENT = "catalog"
#: Table holding the schema version of every other component.
COMPONENTS_TABLE = "schema_components"

_T = TypeVar("_T")


class SqliteBackend:
    """Connections and schema versions of one SQLite file (created with mode 0600 when missing)."""

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        _create_private(self.path)

    def connect(self, retry: Callable[[Callable[[], object]], object]) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def get_version(self, conn: sqlite3.Connection, component: str) -> int:
        if component == USER_VERSION_COMPONENT:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (COMPONENTS_TABLE,)
        ).fetchone()
        if has_table is None:
            return 0
        row = conn.execute(
            f"SELECT version FROM {COMPONENTS_TABLE} WHERE component = ?", (component,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def set_version(self, conn: sqlite3.Connection, component: str, version: int) -> None:
        if component == USER_VERSION_COMPONENT:
            conn.execute(f"PRAGMA user_version = {int(version)}")
            return
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {COMPONENTS_TABLE} "
            "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        conn.execute(
            f"INSERT INTO {COMPONENTS_TABLE} (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, int(version)),
        )


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when missing (SQLite gives its -wal/-shm files the same mode).

    An existing file (and its -wal/-shm) readable by others, from an older sharelab, is made 0600 too:
    it holds token hashes, recipient properties and the audit.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # exists already, or cannot be created: SQLite reports the latter itself
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                st = f.stat()
                if st.st_mode & 0o077 and st.st_uid == os.getuid():
                    os.chmod(f, 0o600)
            except OSError:  # missing, or not ours to change
                continue
        return
    os.close(fd)
