"""The mesh's tables (prefixed ``mesh_``) in the catalog's SQLite file, reached through the catalog's one
database layer (:class:`helpers.catalog.db.Database`): the same connection and retry policy as the catalog,
and catalog calls made inside a mesh transaction join it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from helpers.catalog.db import Database

_T = TypeVar("_T")

#: The component name of the mesh's migrations in :meth:`Database.ensure_schema`.
SCHEMA_COMPONENT = "mesh"

_DDL = (
    """CREATE TABLE IF NOT EXISTS mesh_domains (
        name TEXT PRIMARY KEY COLLATE NOCASE, owner TEXT NOT NULL, team TEXT NOT NULL,
        description TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mesh_products (
        name TEXT PRIMARY KEY COLLATE NOCASE, domain TEXT NOT NULL COLLATE NOCASE,
        share TEXT NOT NULL UNIQUE COLLATE NOCASE, owner TEXT NOT NULL, description TEXT NOT NULL,
        tags TEXT NOT NULL, tier INTEGER NOT NULL, sla TEXT NOT NULL, output_tables TEXT NOT NULL,
        keys TEXT NOT NULL, optional_columns TEXT NOT NULL, compatibility TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mesh_rules (
        product TEXT NOT NULL COLLATE NOCASE, table_alias TEXT NOT NULL COLLATE NOCASE,
        name TEXT NOT NULL COLLATE NOCASE, expression TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (product, table_alias, name))""",
    """CREATE TABLE IF NOT EXISTS mesh_versions (
        product TEXT NOT NULL COLLATE NOCASE, version TEXT NOT NULL, major INTEGER NOT NULL,
        minor INTEGER NOT NULL, patch INTEGER NOT NULL, published_at TEXT NOT NULL,
        schemas TEXT NOT NULL, table_versions TEXT NOT NULL, access_policy TEXT NOT NULL,
        compliance TEXT NOT NULL, warnings TEXT NOT NULL, changes TEXT NOT NULL,
        PRIMARY KEY (product, version))""",
    """CREATE TABLE IF NOT EXISTS mesh_subscriptions (
        product TEXT NOT NULL COLLATE NOCASE, recipient TEXT NOT NULL COLLATE NOCASE,
        consumer_domain TEXT, version TEXT NOT NULL, status TEXT NOT NULL,
        subscribed_at TEXT NOT NULL, ended_at TEXT, created_recipient INTEGER NOT NULL,
        PRIMARY KEY (product, recipient))""",
    """CREATE TABLE IF NOT EXISTS mesh_quality (
        run_id TEXT NOT NULL, product TEXT NOT NULL COLLATE NOCASE, table_alias TEXT NOT NULL,
        metric TEXT NOT NULL, column_name TEXT NOT NULL, value REAL, delta_version INTEGER,
        measured_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mesh_quality_product ON mesh_quality (product, measured_at)",
    """CREATE TABLE IF NOT EXISTS mesh_policies (
        name TEXT PRIMARY KEY COLLATE NOCASE, rule TEXT NOT NULL, enforcement TEXT NOT NULL,
        applies_to TEXT NOT NULL, description TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mesh_column_tags (
        location TEXT NOT NULL, table_name TEXT NOT NULL COLLATE NOCASE,
        column_name TEXT NOT NULL COLLATE NOCASE, tag TEXT NOT NULL COLLATE NOCASE,
        created_at TEXT NOT NULL, PRIMARY KEY (location, column_name, tag))""",
    """CREATE TABLE IF NOT EXISTS mesh_lineage (
        source TEXT NOT NULL COLLATE NOCASE, target TEXT NOT NULL COLLATE NOCASE,
        transformation TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (source, target))""",
    """CREATE TABLE IF NOT EXISTS mesh_events (
        event_time TEXT NOT NULL, kind TEXT NOT NULL, product TEXT, subject TEXT, detail TEXT NOT NULL)""",
)


def create_mesh_tables(con: sqlite3.Connection) -> None:
    """Migration 1 of the mesh: every ``mesh_`` table. ``IF NOT EXISTS`` because catalog files written
    before the mesh had a schema version already hold these tables."""
    for stmt in _DDL:
        con.execute(stmt)


#: ``MIGRATIONS[n]`` upgrades the mesh tables from version n-1 to n.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: create_mesh_tables}


def fetch_rows(con: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """``sql``'s rows (:class:`sqlite3.Row`, the Database's row factory: read by column name)."""
    return list(con.execute(sql, params).fetchall())


def fetch_row(con: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
    rows = fetch_rows(con, sql, params)
    return rows[0] if rows else None


class MeshStore:
    """The mesh tables of one catalog database: reads, writes and transactions of the catalog's
    :class:`~helpers.catalog.db.Database` (no connection or retry policy of its own).

    ``write`` and ``transaction`` are re-entrant: inside ``with store.transaction():`` every mesh write and
    every :class:`~helpers.catalog.Catalog` call on the same thread joins the one transaction.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema(SCHEMA_COMPONENT, MIGRATIONS)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.db.read(lambda con: fetch_rows(con, sql, params))

    def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return self.db.write(fn)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.db.transaction()
