"""The one database layer of the catalog: connection policy, pooling, transactions, retries, migrations.

Two backends (:mod:`helpers.catalog.backends`): SQLite, the embedded default (``Database(path)``), and
PostgreSQL (``Database("postgresql://…")``), where the components' SQL is translated from SQLite's dialect
and write transactions are serialised by an advisory lock, so every guarantee below holds on both.

The catalog and the mesh (and the sharing server's threads, notebooks and CLI processes) use the same file
at once. Every connection gets the same policy: WAL, a ``busy_timeout``, ``foreign_keys`` on and
``synchronous = NORMAL``. Every write is one ``BEGIN IMMEDIATE`` transaction retried as a whole with backoff
(up to :data:`WRITE_RETRY_SECONDS`) while SQLite reports the database busy or locked, so "database is
locked" never reaches the caller; a failed call rolls back and leaves the file unchanged.

Connections are borrowed from a small pool for one transaction and given back at its end; at most
``max_idle`` idle connections are kept, the rest are closed. So a thread that goes away (the server's worker
threads come and go) leaves no connection behind, and the number of open connections is bounded by the
number of transactions running at once plus ``max_idle``.

Transactions are re-entrant per thread: a ``write``/``read``/``transaction`` called on a thread that is
already inside a write transaction of the same :class:`Database` joins it (inside a ``SAVEPOINT``, so a failed
inner call is undone alone, and no nested commit), so "grant + mesh rows" can be one atomic transaction.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from helpers.catalog.backends import is_postgres_url
from helpers.catalog.backends.sqlite import (
    BUSY_TIMEOUT_MS,
    COMPONENTS_TABLE,
    USER_VERSION_COMPONENT,
    SqliteBackend,
)
from helpers.exceptions import SharelabError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "COMPONENTS_TABLE",
    "USER_VERSION_COMPONENT",
    "MAX_IDLE_CONNECTIONS",
    "WRITE_RETRY_SECONDS",
    "Database",
    "Migration",
    "is_busy",
]

#: How long a write keeps retrying when the database is busy before giving up.
WRITE_RETRY_SECONDS = 30.0
#: Idle connections a :class:`Database` keeps for reuse; more are closed when given back.
MAX_IDLE_CONNECTIONS = 4

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_T = TypeVar("_T")
#: Connections inherited across a fork: the child keeps them referenced and never touches them.
_FORKED_AWAY: list[object] = []

#: A migration step: ``migrations[n]`` brings a component from version n-1 to n.
Migration = Callable[[sqlite3.Connection], None]


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLite's "database is busy/locked" (worth retrying), not a real error."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@dataclass
class _Borrowed:
    """A pooled connection and the pool generation it was opened in (``close()`` starts a new one)."""

    conn: sqlite3.Connection
    generation: int


@dataclass
class _Tx:
    """The transaction running on this thread: joined by nested calls."""

    conn: sqlite3.Connection
    write: bool
    savepoints: int = 0
    memo: dict[str, Any] | None = None


class Database:
    """One catalog database (a SQLite file or a PostgreSQL URL) with the policy above.

    :param path: the SQLite file, created with mode 0600 when missing (its ``-wal`` and ``-shm`` files get
        the same mode from SQLite); or a ``postgresql://`` URL (see
        :mod:`helpers.catalog.backends.postgres`).
    :param max_idle: idle connections kept for reuse.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_idle: int = MAX_IDLE_CONNECTIONS
    ) -> None:
        self._backend: Any
        if is_postgres_url(path):
            from helpers.catalog.backends.postgres import PostgresBackend

            self._backend = PostgresBackend(str(path))
            #: For SQLite the file; for PostgreSQL a placeholder path naming the redacted URL.
            self.path = Path(self._backend.location)
        else:
            self._backend = SqliteBackend(path)
            self.path = Path(path)
        #: Where the database is, for messages: the file, or the URL without its password.
        self.location: str = self._backend.location
        #: ``"sqlite"`` or ``"postgresql"``.
        self.backend: str = self._backend.name
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[_Borrowed] = []
        self._open = 0
        self._generation = 0
        self._pid = os.getpid()
        self._local = threading.local()
        #: Called with the new access generation after a commit whose transaction bumped it (PostgreSQL;
        #: set by :func:`helpers.catalog.watch.ensure_watch_schema`: the wait for the watchers).
        self.after_access_change: Callable[[int], None] | None = None

    def __repr__(self) -> str:
        return f"Database({self.location!r})"

    # -- the pool --------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Connections of this process open now (idle in the pool plus borrowed by transactions)."""
        with self._lock:
            self._check_fork()
            return self._open

    @property
    def idle_connections(self) -> int:
        """Connections idle in the pool now."""
        with self._lock:
            self._check_fork()
            return len(self._idle)

    def close(self) -> None:
        """Close the idle connections; borrowed ones are closed when given back. The object stays usable."""
        with self._lock:
            self._check_fork()
            idle, self._idle = self._idle, []
            self._generation += 1
            self._open -= len(idle)
        for item in idle:
            _close_quietly(item.conn)

    def _check_fork(self) -> None:
        # A forked child must not touch its parent's connections (not even close them): forget them.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            # kept referenced, never closed or collected here: closing a PostgreSQL connection sends a
            # Terminate on the socket the parent still uses (and SQLite's close drops the parent's locks)
            _FORKED_AWAY.extend(self._idle)
            self._idle = []
            self._open = 0
            self._generation += 1
            self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        if self.backend == "sqlite":
            return cast(sqlite3.Connection, self._backend.connect(self._retry))
        return cast(sqlite3.Connection, self._backend.connect())

    def _borrow(self) -> _Borrowed:
        with self._lock:
            self._check_fork()
            if self._idle:
                return self._idle.pop()
            self._open += 1
            generation = self._generation
        try:
            return _Borrowed(self._connect(), generation)
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def _give_back(self, item: _Borrowed) -> None:
        if item.conn.in_transaction:  # never pool a connection with an open transaction
            try:
                item.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        broken = bool(getattr(item.conn, "broken", False))  # a PostgreSQL connection that was lost
        with self._lock:
            if os.getpid() != self._pid:
                return  # borrowed before a fork: the parent's, not ours
            if (
                not broken
                and item.generation == self._generation
                and len(self._idle) < self.max_idle
            ):
                self._idle.append(item)
                return
            self._open -= 1
        _close_quietly(item.conn)

    # -- transactions ----------------------------------------------------------------------------

    def _current(self) -> _Tx | None:
        if os.getpid() != self._pid:
            return None
        tx: _Tx | None = getattr(self._local, "tx", None)
        return tx

    def transaction_kind(self) -> str | None:
        """``"read"`` or ``"write"``: the transaction this thread is in (None: none)."""
        tx = self._current()
        return None if tx is None else ("write" if tx.write else "read")

    def read_memo(self) -> dict[str, Any] | None:
        """A dict that lives as long as this thread's read transaction, for values its one snapshot
        fixes (read once per transaction); None outside a read transaction (a write one changes them)."""
        tx = self._current()
        if tx is None or tx.write:
            return None
        if tx.memo is None:
            tx.memo = {}
        return tx.memo

    def _retry(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` again with backoff while SQLite reports busy, up to :data:`WRITE_RETRY_SECONDS`."""
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    if is_busy(exc):
                        raise SharelabError(
                            f"the catalog {self.location} stayed busy for {WRITE_RETRY_SECONDS:.0f} s; "
                            "another process holds it, try again or stop that process"
                        ) from exc
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _joined(self, tx: _Tx, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` inside the thread's write transaction, in a savepoint (undone alone if it fails)."""
        tx.savepoints += 1
        name = f"nested_{tx.savepoints}"
        tx.conn.execute(f"SAVEPOINT {name}")
        try:
            result = fn(tx.conn)
        except BaseException:
            tx.conn.execute(f"ROLLBACK TO {name}")
            tx.conn.execute(f"RELEASE {name}")
            raise
        finally:
            tx.savepoints -= 1
        tx.conn.execute(f"RELEASE {name}")
        return result

    def dedicated_connection(self) -> Any:
        """A new connection of its own, never pooled (PostgreSQL: a ``LISTEN`` connection); the caller
        closes it."""
        return self._connect()

    def _commit(self, conn: sqlite3.Connection, write: bool) -> int | None:
        """COMMIT; on PostgreSQL a write reports the access generation it bumped the counter to."""
        if write and self.backend == "postgresql":
            return cast("int | None", self._backend.commit(conn))
        conn.execute("COMMIT")
        return None

    def _changed(self, bumped: int | None) -> None:
        """After a commit that bumped the access generation: the hook (never fails the committed write)."""
        hook = self.after_access_change
        if bumped is None or hook is None:
            return
        try:
            hook(bumped)
        except Exception as exc:  # noqa: BLE001 - committed already: never retried or reported failed
            logging.getLogger("sharelab.catalog").warning("after an access change: %s", exc)

    def _attempt(self, fn: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        item = self._borrow()
        conn = item.conn
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            self._local.tx = _Tx(conn, write)
            try:
                result = fn(conn)
                bumped = self._commit(conn, write)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.tx = None
        finally:
            self._give_back(item)
        self._changed(bumped)
        return result

    def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retried as a whole while the file is busy.

        Inside a write transaction of this thread, ``fn`` joins it instead (no retry, no own commit).
        """
        tx = self._current()
        if tx is not None:
            if not tx.write:
                raise RuntimeError("a catalog write cannot run inside a read transaction")
            return self._joined(tx, fn)
        return self._retry(lambda: self._attempt(fn, write=True))

    def read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one read transaction (a consistent snapshot under WAL); joins the current one."""
        tx = self._current()
        if tx is not None:
            return fn(tx.conn)
        return self._retry(lambda: self._attempt(fn, write=False))

    def read_one(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn``, which reads with *one* statement, outside an explicit transaction (a statement is
        its own consistent snapshot): on PostgreSQL one round trip instead of two (no ``COMMIT``).
        Joins the current transaction when there is one."""
        tx = self._current()
        if tx is not None:
            return fn(tx.conn)

        def attempt() -> _T:
            item = self._borrow()
            try:
                return fn(item.conn)
            finally:
                self._give_back(item)

        return self._retry(attempt)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction as a context manager: committed at the end, rolled back on an exception.

        Every catalog (or mesh) call made inside it on this thread joins it. Only taking the write lock is
        retried while busy: the body runs once.
        """
        tx = self._current()
        if tx is not None:
            if not tx.write:
                raise RuntimeError("a catalog write cannot run inside a read transaction")
            # join in a savepoint, like a nested write()
            tx.savepoints += 1
            name = f"nested_{tx.savepoints}"
            tx.conn.execute(f"SAVEPOINT {name}")
            try:
                yield tx.conn
            except BaseException:
                tx.conn.execute(f"ROLLBACK TO {name}")
                tx.conn.execute(f"RELEASE {name}")
                raise
            finally:
                tx.savepoints -= 1
            tx.conn.execute(f"RELEASE {name}")
            return
        item = self._borrow()
        conn = item.conn
        try:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            self._local.tx = _Tx(conn, True)
            try:
                yield conn
                bumped = self._commit(conn, True)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.tx = None
        finally:
            self._give_back(item)
        self._changed(bumped)

    # -- schema versions -------------------------------------------------------------------------

    def schema_version(self, component: str) -> int:
        """The version of ``component``'s tables in this file (0 when never created)."""
        return self.read(lambda conn: int(self._backend.get_version(conn, component)))

    def ensure_schema(self, component: str, migrations: Mapping[int, Migration]) -> int:
        """Bring ``component`` to the newest version of ``migrations``, one step at a time, in one transaction.

        ``migrations[n]`` upgrades from version n-1 to n. Already current: nothing is written. Returns the
        version. :raises SharelabError: when the file is newer than ``migrations`` knows.
        """
        latest = max(migrations, default=0)

        def check(version: int) -> int:
            if version > latest:
                raise SharelabError(
                    f"the {component} schema of {self.location} has version {version}, newer than this "
                    f"sharelab ({latest}); upgrade sharelab or use another --home"
                )
            return version

        if check(self.schema_version(component)) == latest:
            return latest

        def step(conn: sqlite3.Connection) -> int:
            version = check(int(self._backend.get_version(conn, component)))  # under the lock
            while version < latest:
                migrations[version + 1](conn)
                version += 1
                self._backend.set_version(conn, component, version)
            return version

        return self.write(step)


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass
