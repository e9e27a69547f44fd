"""The catalog's *access generation*: one counter that every write changing access bumps, in its own
transaction, so a process may cache what it derived from access facts for as long as the counter holds.

Triggers do the bumping (``AFTER INSERT/UPDATE/DELETE``, per row on both backends), so no writer can
forget it, whichever process or sharelab version writes: tokens (issue, rotate, revoke, expiry change),
recipients (properties), grants and grant conditions, shares, share entries (add/remove a table, partition
filter, history, alias), registered tables, share pins, views, share views, IP access lists, and the
Unity-style catalogs/schemas/managed tables. Reading it is one one-row statement, on PostgreSQL one round
trip, so a cache checked against it stays exactly as current as the catalog itself, across processes,
workers and replicas (the audit tables are not watched: a request's audit row bumps nothing).

A migration that rebuilds one of the watched tables (SQLite's create/copy/drop/rename) drops its triggers:
:func:`ensure_generation` checks them once per process and puts back any that are missing.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from typing import Any

from helpers.catalog.backends.walindex import WalIndexProbe
from helpers.catalog.db import Database

__all__ = [
    "COMPONENT",
    "WATCHED_TABLES",
    "GenerationCache",
    "current_generation",
    "ensure_generation",
    "read_generation",
]

#: The component name of the counter table in :meth:`Database.ensure_schema`.
COMPONENT = "access_generation"
#: The tables whose rows decide who may read what (every write to them bumps the counter).
WATCHED_TABLES = (
    "tables",
    "shares",
    "share_entries",
    "recipients",
    "tokens",
    "grants",
    "grant_conditions",
    "share_pins",
    "view_defs",
    "share_views",
    "recipient_ip_access",
    "uc_catalogs",
    "uc_schemas",
    "managed_tables",
)
_TRIGGER = "access_generation_bump_{table}"
_FUNCTION = "access_generation_bump"
_READ_SQL = "SELECT n FROM access_generation WHERE id = 1"
_READY: weakref.WeakSet[Database] = weakref.WeakSet()
_READY_LOCK = threading.Lock()


def _is_sqlite(conn: Any) -> bool:
    return isinstance(conn, sqlite3.Connection)


def _create_counter(conn: Any) -> None:
    conn.execute("CREATE TABLE access_generation (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.execute("INSERT INTO access_generation (id, n) VALUES (1, 0)")
    _install_triggers(conn, _existing(conn))


def _existing(conn: Any) -> list[str]:
    """The watched tables present in this catalog (a component's tables may not be made yet)."""
    if _is_sqlite(conn):
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    else:
        rows = conn.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    present = {str(r[0]).lower() for r in rows}
    return [t for t in WATCHED_TABLES if t in present]


def _triggers(conn: Any) -> set[str]:
    if _is_sqlite(conn):
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    else:
        rows = conn.execute(
            "SELECT t.tgname FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c "
            "ON c.oid = t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace"
        ).fetchall()
    return {str(r[0]).lower() for r in rows}


def _install_triggers(conn: Any, tables: list[str]) -> None:
    """A bump trigger on each of ``tables``; SQLite's and PostgreSQL's trigger syntax differ."""
    if _is_sqlite(conn):
        for table in tables:
            for op in ("INSERT", "UPDATE", "DELETE"):
                conn.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGER.format(table=table)}_{op.lower()} "
                    f"AFTER {op} ON {table} BEGIN "
                    "UPDATE access_generation SET n = n + 1 WHERE id = 1; END"
                )
        return
    conn.execute("SELECT 1")  # sends the transaction's pending BEGIN before the raw statements
    raw = conn.raw  # plpgsql is no SQLite dialect: past the translation layer
    raw.execute(
        f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN UPDATE access_generation SET n = n + 1 WHERE id = 1; RETURN NULL; END $$"
    )
    for table in tables:
        name = _TRIGGER.format(table=table)
        raw.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        raw.execute(
            f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {_FUNCTION}()"
        )


def _missing(conn: Any) -> list[str]:
    have = _triggers(conn)
    if _is_sqlite(conn):
        return [
            t
            for t in _existing(conn)
            if any(
                f"{_TRIGGER.format(table=t)}_{op}" not in have
                for op in ("insert", "update", "delete")
            )
        ]
    return [t for t in _existing(conn) if _TRIGGER.format(table=t) not in have]


def ensure_generation(db: Database) -> bool:
    """The counter and its triggers in ``db`` (once per process and database; made by
    :class:`~helpers.catalog.Catalog` when it opens, after every component's tables, so that each watched
    table gets its trigger). Returns True: the counter is there."""
    if db in _READY:
        return True
    with _READY_LOCK:
        if db in _READY:
            return True
        db.ensure_schema(COMPONENT, {1: _create_counter})
        if db.read(_missing):
            db.write(lambda conn: _install_triggers(conn, _missing(conn)))
        _READY.add(db)
    return True


def read_generation(conn: Any) -> int | None:
    """The counter, read on ``conn`` (inside a caller's transaction: the same snapshot as its reads);
    None when this snapshot predates the counter (a transaction begun before it was made)."""
    try:
        row = conn.execute(_READ_SQL).fetchone()
    except sqlite3.OperationalError:  # SQLite: no such table in this snapshot yet
        return None
    return None if row is None else int(row[0])


class _Probed:
    """A SQLite file's WAL-index probe and the last generation read with the header seen before it."""

    def __init__(self, db: Database) -> None:
        self.probe = WalIndexProbe(db.path)
        self.last: tuple[bytes, int] | None = None


_PROBED: weakref.WeakKeyDictionary[Database, _Probed] = weakref.WeakKeyDictionary()


def current_generation(db: Database) -> int | None:
    """The counter now, read outside any transaction. On SQLite the last value read is answered again,
    with no statement, while the file's WAL-index header shows no commit since that read began
    (:mod:`~helpers.catalog.backends.walindex`); a request's audit rows are commits too, so under load
    one read serves the requests between two of the audit writer's group commits."""
    if db.backend != "sqlite" or db.transaction_kind() is not None:
        return db.read_one(read_generation)
    probed = _PROBED.get(db)
    if probed is None:
        probed = _PROBED.setdefault(db, _Probed(db))
    seen = probed.probe.header()
    last = probed.last
    if seen is not None and last is not None and last[0] == seen:
        return last[1]
    generation = db.read_one(read_generation)
    if seen is not None and generation is not None:
        probed.last = (seen, generation)  # one tuple: threads replace it whole
    return generation


class GenerationCache:
    """Values derived from access facts, valid while the access generation they were read at holds.

    Each entry keeps its generation (threads may store at different ones); entries of another
    generation are dropped when a new one is stored; at most ``limit`` entries (the oldest go first).
    """

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._generation: int | None = None
        self._items: dict[Any, tuple[int, Any]] = {}

    def get(self, key: Any, generation: int) -> Any:
        """The value stored for ``key`` at ``generation``, or None."""
        found = self._items.get(key)
        if found is None or found[0] != generation:
            return None
        return found[1]

    def put(self, key: Any, value: Any, generation: int) -> None:
        """Remember ``value`` for ``key`` as read at ``generation``."""
        if generation != self._generation:
            self._items = {}
            self._generation = generation
        items = self._items
        items[key] = (generation, value)
        if len(items) > self.limit:
            try:
                items.pop(next(iter(items)), None)
            except (RuntimeError, StopIteration):  # another thread changed it meanwhile: next time
                pass

    def clear(self) -> None:
        self._items = {}
