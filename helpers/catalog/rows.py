"""Row lookups and SELECTs shared by the catalog's calls, used inside their transactions."""

from __future__ import annotations

import sqlite3

from helpers.exceptions import NotFoundError

__all__ = [
    "ENTRY_SELECT",
    "GRANT_SELECT",
    "TOKEN_SELECT",
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


def share_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The ``shares`` row of ``name`` (case-insensitive). :raises NotFoundError:"""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM shares WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"share {name!r} does not exist; create it with CREATE SHARE {name}")
    return row


def recipient_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The ``recipients`` row of ``name`` (case-insensitive). :raises NotFoundError:"""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM recipients WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"recipient {name!r} does not exist; create it with CREATE RECIPIENT {name}"
        )
    return row


def table_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The ``tables`` row of ``name`` (case-insensitive). :raises NotFoundError:"""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tables WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"table {name!r} is not registered; generate its dataset or run "
            f"CREATE TABLE {name} LOCATION '/path/to/delta'"
        )
    return row
