"""The PostgreSQL backend of the catalog's database layer (psycopg 3).

A :class:`PgConnection` looks like the ``sqlite3.Connection`` the components are written against:
``execute(sql, params)`` with ``?`` placeholders (translated by :mod:`.dialect`), rows readable by index and
by column name, ``in_transaction``, and errors raised as the ``sqlite3`` exception of the same kind
(``IntegrityError`` for a unique or foreign-key violation, ``OperationalError`` "database is locked" for a
serialization failure or deadlock, which :class:`~helpers.catalog.db.Database` retries), so a component's
``except`` clauses and the layer's retry policy hold on both backends.

Transactions keep SQLite's guarantees: a write transaction takes one advisory lock of its schema
(``pg_advisory_xact_lock``) right after ``BEGIN``, so writes are serialised as under SQLite's
``BEGIN IMMEDIATE`` and a read-then-write never races another writer (one-time activation codes, grant
checks, migrations); a read transaction is ``REPEATABLE READ`` (one snapshot, like a WAL read).

The URL is libpq's (``postgresql://user:pass@host:port/db``, or ``?host=/socket/dir``) plus one sharelab
parameter: ``schema=NAME`` keeps the catalog in that schema (created when missing), so one PostgreSQL
database can hold several labs' catalogs. Every catalog needs the ``citext`` extension (case-insensitive
names); it is created when missing (a trusted extension: the database owner may create it).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from helpers.catalog.backends import redact_url
from helpers.catalog.backends.dialect import Translation, to_postgres
from helpers.exceptions import InvalidArgumentError, SharelabError

__all__ = ["PgConnection", "PostgresBackend", "Row"]

#: The table holding every component's schema version (the catalog's too, on PostgreSQL).
COMPONENTS_TABLE = "schema_components"
#: The transaction-local setting the access generation's trigger notes its new value in.
ACCESS_BUMPED = "sharelab.access_bumped"


class Row(tuple[Any, ...]):
    """A result row read by position or by (case-insensitive) column name, like ``sqlite3.Row``."""

    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __new__(cls, names: tuple[str, ...], index: dict[str, int], values: Sequence[Any]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key.lower()])
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


class _Cursor:
    """What ``execute`` returns: ``fetchone``/``fetchall``/iteration/``rowcount`` over converted rows."""

    def __init__(self, cur: Any, *, keep_rowid: bool = True) -> None:
        self._cur = cur
        desc = cur.description
        names = () if desc is None else tuple(c.name for c in desc)
        #: Positions of the columns handed out (the dialect's added ``rowid`` left out unless asked for).
        self._keep: list[int] | None = None
        if not keep_rowid and "rowid" in names:
            self._keep = [i for i, n in enumerate(names) if n != "rowid"]
            names = tuple(names[i] for i in self._keep)
        self._names: tuple[str, ...] = names
        self._index = {n.lower(): i for i, n in reversed(list(enumerate(self._names)))}
        self.rowcount: int = cur.rowcount
        self.description = desc

    def _row(self, values: Sequence[Any] | None) -> Row | None:
        if values is None:
            return None
        return Row(self._names, self._index, self._convert(values))

    def fetchone(self) -> Row | None:
        if self._cur.description is None:
            return None
        return self._row(self._cur.fetchone())

    def fetchall(self) -> list[Row]:
        if self._cur.description is None:
            return []
        return [Row(self._names, self._index, self._convert(v)) for v in self._cur.fetchall()]

    def fetchmany(self, size: int = 1) -> list[Row]:
        return [Row(self._names, self._index, self._convert(v)) for v in self._cur.fetchmany(size)]

    def _convert(self, values: Sequence[Any]) -> list[Any]:
        if self._keep is not None:
            values = [values[i] for i in self._keep]
        return [_number(v) if isinstance(v, Decimal) else v for v in values]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())

    def close(self) -> None:
        self._cur.close()


def _params(params: Sequence[Any] | None) -> tuple[Any, ...]:
    if params is None:
        return ()
    if isinstance(params, dict):
        raise sqlite3.ProgrammingError("named parameters are not portable: use ? placeholders")
    out = tuple(int(p) if isinstance(p, bool) else p for p in params)
    for p in out:
        if isinstance(p, str) and "\x00" in p:
            raise InvalidArgumentError(
                "text with a NUL character (\\x00) cannot be stored in a PostgreSQL catalog; "
                f"remove it from {p[:40]!r}"
            )
    return out


def _as_sqlite_error(exc: Exception) -> sqlite3.Error:
    """The ``sqlite3`` exception of the same kind as psycopg's ``exc`` (same message)."""
    import psycopg

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    state = getattr(getattr(exc, "diag", None), "sqlstate", None) or ""
    if state in ("40001", "40P01", "55P03"):
        return sqlite3.OperationalError(f"database is locked ({text})")
    if isinstance(exc, psycopg.errors.IntegrityError):
        kind = "UNIQUE" if state == "23505" else "FOREIGN KEY" if state == "23503" else "CHECK"
        return sqlite3.IntegrityError(f"{kind} constraint failed: {text}")
    if isinstance(exc, psycopg.errors.DataError):
        return sqlite3.DataError(text)
    if isinstance(exc, psycopg.errors.ProgrammingError | psycopg.errors.OperationalError):
        return sqlite3.OperationalError(text)
    return sqlite3.DatabaseError(text)


class PgConnection:
    """One psycopg connection dressed as the ``sqlite3.Connection`` the components use (see the module)."""

    def __init__(self, raw: Any, backend: PostgresBackend) -> None:
        self.raw = raw
        self._backend = backend
        #: ``BEGIN ...;`` not sent yet: it travels with the transaction's first statement (one round
        #: trip less per transaction; a transaction that runs nothing costs none)
        self._pending = ""

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        if self._pending:
            return True
        return bool(self.raw.info.transaction_status != TransactionStatus.IDLE)

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        import psycopg

        tr = to_postgres(sql)
        text = tr.sql
        if tr.upsert_table is not None:
            text = text.replace("{conflict}", self._backend.conflict_clause(self, tr))
        prefix, self._pending = self._pending, ""
        try:
            cur = self.raw.execute(prefix + text, _params(params))
            for _ in range(prefix.count(";")):
                cur.nextset()
            return _Cursor(cur, keep_rowid=tr.names_rowid)
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from exc

    def _flush(self) -> None:
        import psycopg

        prefix, self._pending = self._pending, ""
        if prefix:
            try:
                self.raw.execute(prefix)
            except psycopg.Error as exc:
                raise _as_sqlite_error(exc) from exc

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        upper = sql.lstrip()[:16].upper()
        if upper.startswith("BEGIN"):
            if self.in_transaction:
                raise sqlite3.OperationalError("cannot start a transaction within a transaction")
            self._pending = self._backend.begin_sql(
                write="IMMEDIATE" in upper or "EXCLUSIVE" in upper
            )
            return _Cursor(self.raw.cursor())
        if self._pending and upper.strip().rstrip(";") in ("COMMIT", "ROLLBACK", "END"):
            self._pending = ""  # nothing ran: nothing to end
            return _Cursor(self.raw.cursor())
        if upper.startswith("PRAGMA"):
            raise sqlite3.OperationalError(
                f"PRAGMA is SQLite-only and has no meaning on PostgreSQL: {sql.strip()[:60]}"
            )
        return self._run(sql, params)

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> _Cursor:
        import psycopg

        tr = to_postgres(sql)
        text = tr.sql
        if tr.upsert_table is not None:
            text = text.replace("{conflict}", self._backend.conflict_clause(self, tr))
        self._flush()
        cur = self.raw.cursor()
        try:
            cur.executemany(text, [_params(p) for p in seq])
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from exc
        return _Cursor(cur)

    def executescript(self, script: str) -> None:
        for statement in script.split(";"):
            if statement.strip():
                self.execute(statement)

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


class PostgresBackend:
    """Connections, transactions and schema versions of one PostgreSQL catalog (see the module).

    :param url: libpq URL plus an optional ``schema=NAME`` parameter.
    """

    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = redact_url(url)
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
        self.schema = dict(parse_qsl(parts.query)).get("schema") or None
        self._conninfo = urlunsplit(parts._replace(query=urlencode(query)))
        key = f"{parts.hostname}:{parts.port}{parts.path}/{self.schema or 'public'}"
        # one advisory lock per catalog: writes are serialised like SQLite's BEGIN IMMEDIATE
        self.lock_key = int.from_bytes(
            hashlib.sha256(key.encode()).digest()[:8], "big", signed=True
        )
        self._prepared = False
        self._prepare_lock = threading.Lock()
        self._keys: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def connect(self) -> PgConnection:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise SharelabError(
                "a PostgreSQL catalog needs psycopg: pip install 'psycopg[binary]'"
            ) from exc
        try:
            raw = psycopg.connect(
                self._conninfo,
                autocommit=True,
                cursor_factory=psycopg.ClientCursor,
                connect_timeout=10,
                application_name="sharelab",
            )
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SharelabError(
                f"cannot connect to the PostgreSQL catalog {self.location}: {first}; check "
                "--catalog-url / $SHARELAB_CATALOG_URL and that the server runs"
            ) from None
        conn = PgConnection(raw, self)
        try:
            self._prepare(conn)
        except BaseException:
            raw.close()
            raise
        return conn

    def _prepare(self, conn: PgConnection) -> None:
        """The schema (created once per process) on ``search_path``, and the citext extension."""
        raw = conn.raw
        if self.schema:
            ident = '"' + self.schema.replace('"', '""') + '"'
            raw.execute(f"SET search_path TO {ident}, public")
        if self._prepared:
            return
        with self._prepare_lock:
            if self._prepared:
                return
            raw.execute("BEGIN")
            # a lock of its own: a reader opening while a writer holds the write lock must not wait
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key ^ 1,))
            try:
                if self.schema:
                    raw.execute(f"CREATE SCHEMA IF NOT EXISTS {ident}")
                if (
                    raw.execute("SELECT 1 FROM pg_extension WHERE extname = 'citext'").fetchone()
                    is None
                ):
                    raw.execute("CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public")
                raw.execute("COMMIT")
            except Exception as exc:
                raw.execute("ROLLBACK")
                raise SharelabError(
                    f"cannot prepare the PostgreSQL catalog {self.location}: {exc}; the catalog needs "
                    "the citext extension (CREATE EXTENSION citext) and CREATE on the database"
                ) from None
            self._prepared = True

    def begin_sql(self, *, write: bool) -> str:
        """What starts a transaction: a write takes the catalog's advisory lock, a read one snapshot."""
        if write:
            return f"BEGIN; SELECT pg_advisory_xact_lock({int(self.lock_key)}); "
        return "BEGIN ISOLATION LEVEL REPEATABLE READ; "

    def commit(self, conn: PgConnection) -> int | None:
        """COMMIT a write, returning the access generation its transaction bumped the counter to (noted
        by the counter's trigger, :mod:`helpers.catalog.watch`), or None; in the COMMIT's round trip."""
        import psycopg
        from psycopg.pq import TransactionStatus

        if conn._pending or conn.raw.info.transaction_status == TransactionStatus.IDLE:
            conn.execute("COMMIT")  # nothing ran (or no transaction): nothing bumped
            return None
        try:
            cur = conn.raw.execute(f"SELECT current_setting('{ACCESS_BUMPED}', true); COMMIT")
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from exc
        row = cur.fetchone()
        value = None if row is None else row[0]
        return int(value) if value else None

    def conflict_clause(self, conn: PgConnection, tr: Translation) -> str:
        """The ``ON CONFLICT`` clause of an ``INSERT OR REPLACE`` into ``tr.upsert_table``."""
        table = (tr.upsert_table or "").strip('"').lower()
        if table not in self._keys:
            rows = conn.raw.execute(
                "SELECT a.attname, a.attnum, COALESCE(a.attnum = ANY (i.indkey), false) "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
                "WHERE c.oid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
                "AND a.attidentity <> 'a' ORDER BY a.attnum",
                (table,),
            ).fetchall()
            if not rows:
                raise sqlite3.OperationalError(f"no such table: {table}")
            columns = tuple(r[0] for r in rows)
            key = tuple(r[0] for r in rows if r[2])
            if not key:
                raise sqlite3.OperationalError(
                    f"INSERT OR REPLACE INTO {table} needs a primary key on PostgreSQL"
                )
            self._keys[table] = (key, columns)
        key, columns = self._keys[table]
        return tr.conflict_clause(key, columns)

    # -- schema versions -------------------------------------------------------------------------

    def get_version(self, conn: PgConnection, component: str) -> int:
        conn._flush()  # inside the transaction (and under its lock), not before it
        # pg_tables (the statement's fresh snapshot), not to_regclass: the catalog cache of a transaction
        # that began before another one created the table may not know the table yet
        found = conn.raw.execute(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
            "AND tablename = %s",
            (COMPONENTS_TABLE,),
        ).fetchone()
        if not found:
            return 0
        row = conn.raw.execute(
            f"SELECT version FROM {COMPONENTS_TABLE} WHERE component = %s", (component,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def set_version(self, conn: PgConnection, component: str, version: int) -> None:
        conn._flush()
        conn.raw.execute(
            f"CREATE TABLE IF NOT EXISTS {COMPONENTS_TABLE} "
            "(component TEXT PRIMARY KEY, version BIGINT NOT NULL)"
        )
        conn.raw.execute(
            f"INSERT INTO {COMPONENTS_TABLE} (component, version) VALUES (%s, %s) "
            "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            (component, int(version)),
        )
        self._keys.clear()  # a migration may have changed a table's key
