"""The tables of shared views and IP access lists (the ``shared_views`` component of
:meth:`~helpers.catalog.db.Database.ensure_schema`), apart from :mod:`helpers.catalog.views` so that the
catalog can make them when it opens (before the access generation's triggers go on them) without importing
the views' API, which is built on the catalog."""

from __future__ import annotations

import sqlite3

__all__ = ["COMPONENT", "MIGRATIONS"]

#: The schema component of these tables.
COMPONENT = "shared_views"

_SCHEMA_V1 = (
    """CREATE TABLE view_defs (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        name_key    TEXT NOT NULL UNIQUE,
        catalog     TEXT NOT NULL,
        schema_key  TEXT NOT NULL,
        query       TEXT NOT NULL,
        sources     TEXT NOT NULL,
        props       TEXT NOT NULL,
        columns     TEXT NOT NULL,
        comment     TEXT,
        created_at  REAL NOT NULL
    )""",
    """CREATE TABLE share_views (
        id        TEXT PRIMARY KEY,
        share_id  TEXT NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
        view_id   TEXT NOT NULL REFERENCES view_defs (id),
        alias     TEXT NOT NULL,
        alias_key TEXT NOT NULL,
        comment   TEXT,
        added_at  REAL NOT NULL,
        UNIQUE (share_id, alias_key)
    )""",
    """CREATE TABLE recipient_ip_access (
        recipient_id TEXT PRIMARY KEY REFERENCES recipients (id) ON DELETE CASCADE,
        entries      TEXT NOT NULL,
        updated_at   REAL NOT NULL
    )""",
)


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1:
        conn.execute(statement)


MIGRATIONS = {1: _migrate_to_1}
