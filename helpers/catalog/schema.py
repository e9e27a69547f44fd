"""The catalog's SQLite schema and its migrations (applied by :meth:`Database.ensure_schema`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["COMPONENT", "MIGRATIONS", "SCHEMA_VERSION"]

#: The component name of the catalog's own tables; its version is the file's ``PRAGMA user_version``.
COMPONENT = "catalog"
#: Version of the catalog's SQLite schema (``PRAGMA user_version``).
SCHEMA_VERSION = 1

_SCHEMA_V1 = """
CREATE TABLE tables (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    catalog       TEXT NOT NULL COLLATE NOCASE,
    schema_name   TEXT NOT NULL COLLATE NOCASE,
    table_name    TEXT NOT NULL COLLATE NOCASE,
    location      TEXT NOT NULL,
    registered_at REAL NOT NULL
);
CREATE INDEX tables_schema ON tables (catalog, schema_name);
CREATE TABLE shares (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    comment    TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE share_entries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    share_id         TEXT NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('table', 'schema')),
    source           TEXT NOT NULL COLLATE NOCASE,
    path             TEXT,
    alias            TEXT NOT NULL COLLATE NOCASE,
    comment          TEXT,
    history          INTEGER NOT NULL DEFAULT 0,
    start_version    INTEGER,
    partition_filter TEXT NOT NULL DEFAULT '[]',
    added_at         REAL NOT NULL,
    UNIQUE (share_id, kind, alias)
);
CREATE TABLE recipients (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    comment    TEXT,
    properties TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    prefix       TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    revoked_at   REAL
);
CREATE INDEX tokens_prefix ON tokens (prefix);
CREATE INDEX tokens_recipient ON tokens (recipient_id);
CREATE TABLE activations (
    code_hash    TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    created_at   REAL NOT NULL,
    redeemed_at  REAL
);
CREATE TABLE grants (
    share_id     TEXT NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    recipient_id TEXT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    granted_at   REAL NOT NULL,
    PRIMARY KEY (share_id, recipient_id)
);
CREATE TABLE audit (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_time          REAL NOT NULL,
    recipient           TEXT,
    share               TEXT,
    schema_name         TEXT,
    table_name          TEXT,
    action              TEXT NOT NULL,
    version             INTEGER,
    start_version       INTEGER,
    end_version         INTEGER,
    num_files           INTEGER,
    has_predicate_hints INTEGER NOT NULL DEFAULT 0,
    has_limit_hint      INTEGER NOT NULL DEFAULT 0,
    status_code         INTEGER,
    user_agent          TEXT,
    client_address      TEXT,
    duration_ms         REAL,
    response_format     TEXT
);
CREATE INDEX audit_time ON audit (event_time);
"""


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


#: Step functions: ``MIGRATIONS[n]`` upgrades a catalog from version n-1 to n.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_1}
