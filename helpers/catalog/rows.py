"""Row lookups and SELECTs shared by the catalog's calls, used inside their transactions."""

from __future__ import annotations

import sqlite3

from helpers.catalog.names import name_key
from helpers.exceptions import NotFoundError

__all__ = [
    "ENTRY_SELECT",
    "GRANT_SELECT",
    "TOKEN_SELECT",
    "colliding_alias",
    "colliding_row",
    "find_row",
    "recipient_row",
    "share_row",
    "table_row",
]

TOKEN_SELECT = """
SELECT t.id, t.prefix, t.created_at, t.expires_at, t.revoked_at, r.name AS recipient_name
FROM tokens t JOIN recipients r ON r.id = t.recipient_id
"""
ENTRY_SELECT = """
SELECT e.*, s.name AS share_name FROM share_entries e JOIN shares s ON s.id = e.share_id
"""
GRANT_SELECT = """
SELECT g.granted_at, s.name AS share_name, r.name AS recipient_name
FROM grants g JOIN shares s ON s.id = g.share_id JOIN recipients r ON r.id = g.recipient_id
"""


def find_row(conn: sqlite3.Connection, table: str, name: str) -> sqlite3.Row | None:
    """The row of ``table`` (``shares``, ``recipients`` or ``tables``) whose name matches ``name`` under
    :func:`~helpers.catalog.names.name_key` (Unicode-aware, case-insensitive), or None.

    The SQL match (``COLLATE NOCASE``, ASCII only) is tried first; then the names are compared by key.
    When older catalogs hold several names with the same key, only an exact spelling matches.
    """
    row: sqlite3.Row | None = conn.execute(
        f"SELECT * FROM {table} WHERE name = ?", (name,)
    ).fetchone()
    if row is not None or not isinstance(name, str):
        return row
    key = name_key(name)
    found = [r for r in conn.execute(f"SELECT * FROM {table}") if name_key(r["name"]) == key]
    return found[0] if len(found) == 1 else None


def colliding_row(conn: sqlite3.Connection, table: str, name: str) -> sqlite3.Row | None:
    """Any row of ``table`` whose name is ``name`` under :func:`~helpers.catalog.names.name_key`
    (what a new name must not collide with), or None."""
    row: sqlite3.Row | None = conn.execute(
        f"SELECT * FROM {table} WHERE name = ?", (name,)
    ).fetchone()
    if row is not None:
        return row
    key = name_key(name)
    return next(
        (r for r in conn.execute(f"SELECT * FROM {table}") if name_key(r["name"]) == key), None
    )


def colliding_alias(
    conn: sqlite3.Connection, share_id: str, kind: str, alias: str
) -> sqlite3.Row | None:
    """The entry of kind ``kind`` of a share whose alias is ``alias`` under the name rule, or None."""
    key = name_key(alias)
    return next(
        (
            r
            for r in conn.execute(
                "SELECT * FROM share_entries WHERE share_id = ? AND kind = ?", (share_id, kind)
            )
            if name_key(r["alias"]) == key
        ),
        None,
    )


def share_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The ``shares`` row of ``name`` (:func:`find_row`). :raises NotFoundError:"""
    row = find_row(conn, "shares", name)
    if row is None:
        raise NotFoundError(f"share {name!r} does not exist; create it with CREATE SHARE {name}")
    return row


def recipient_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The ``recipients`` row of ``name`` (:func:`find_row`). :raises NotFoundError:"""
    row = find_row(conn, "recipients", name)
    if row is None:
        raise NotFoundError(
            f"recipient {name!r} does not exist; create it with CREATE RECIPIENT {name}"
        )
    return row


def table_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The ``tables`` row of ``name`` (:func:`find_row`). :raises NotFoundError:"""
    row = find_row(conn, "tables", name)
    if row is None:
        raise NotFoundError(
            f"table {name!r} is not registered; create it (CREATE TABLE {name} (columns) or AS SELECT), "
            f"register one (CREATE TABLE {name} LOCATION '/path/to/delta') or generate its dataset"
        )
    return row
