"""Lineage of derived tables in the catalog: which tables a table is built from, and with what SQL.

Every stage that builds a table from others records it here with one call, :meth:`record_derivation`:
the dataset generators (``daily_revenue`` from ``bookings``), ``CREATE TABLE ... AS SELECT`` and the
data mesh's ``Mesh.record_derivation``. Rebuilding a table replaces its sources. Names are catalog table
names (``catalog.schema.table``) or ``delta.`/path``` sources, matched case-insensitively.

The table ``table_derivations`` belongs to the component ``lineage`` of the catalog's file (own
migrations, :data:`MIGRATIONS`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from helpers.catalog import clock
from helpers.catalog.db import Database
from helpers.catalog.names import parse_delta_path, split_name
from helpers.exceptions import InvalidArgumentError

__all__ = ["COMPONENT", "MIGRATIONS", "Derivation", "LineageMixin"]

COMPONENT = "lineage"


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS table_derivations (
            target TEXT NOT NULL COLLATE NOCASE, source TEXT NOT NULL COLLATE NOCASE,
            kind TEXT NOT NULL, sql TEXT NOT NULL, recorded_at REAL NOT NULL,
            PRIMARY KEY (target, source))"""
    )


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _create_v1}

#: How a derivation was recorded.
KINDS = ("generator", "ctas", "api", "insert")


@dataclass(frozen=True)
class Derivation:
    """``target`` is built from ``source`` by ``sql`` (recorded by ``kind`` at ``recorded_at``)."""

    target: str
    source: str
    kind: str
    sql: str
    recorded_at: datetime


def _check_table_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{what} must be a table name, got {type(name).__name__}")
    if parse_delta_path(name) is None:
        split_name(name, 3, what, "catalog.schema.table")
    return name


class LineageMixin:
    """Derivations of :class:`~helpers.catalog.Catalog`."""

    db: Database

    def record_derivation(
        self,
        target: str,
        sources: Iterable[str],
        *,
        sql: str = "",
        kind: str = "api",
        replace: bool = True,
    ) -> list[Derivation]:
        """Record that ``target`` is built from ``sources`` (with ``sql``).

        :param replace: forget ``target``'s earlier sources first (a rebuild), else add to them.
        :raises InvalidArgumentError: malformed names, a table derived from itself, unknown ``kind``,
            or a cycle (a source already derives from ``target``).
        """
        _check_table_name(target, "derived table")
        srcs = list(dict.fromkeys(_check_table_name(s, "source table") for s in sources))
        if kind not in KINDS:
            raise InvalidArgumentError(f"unknown derivation kind {kind!r}; use one of {KINDS}")
        if any(s.lower() == target.lower() for s in srcs):
            raise InvalidArgumentError(f"a table cannot derive from itself ({target})")

        def body(conn: sqlite3.Connection) -> list[Derivation]:
            downstream = _closure(conn, target, "source", "target")
            cycle = [s for s in srcs if s.lower() in downstream]
            if cycle:
                raise InvalidArgumentError(
                    f"{cycle[0]} derives from {target} already; {target} from {cycle[0]} would make a cycle"
                )
            if replace:
                conn.execute("DELETE FROM table_derivations WHERE target = ?", (target,))
            now = clock.now()
            for s in srcs:
                conn.execute(
                    "INSERT INTO table_derivations (target, source, kind, sql, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (target, source) DO UPDATE SET "
                    "kind = excluded.kind, sql = excluded.sql, recorded_at = excluded.recorded_at",
                    (target, s, kind, sql, now),
                )
            return _rows(conn, "WHERE target = ?", (target,))

        return self.db.write(body)

    def forget_derivation(self, target: str) -> int:
        """Forget every source of ``target``; returns how many were removed."""
        _check_table_name(target, "derived table")
        return self.db.write(
            lambda conn: (
                conn.execute("DELETE FROM table_derivations WHERE target = ?", (target,)).rowcount
            )
        )

    def derivations(self, table: str | None = None) -> list[Derivation]:
        """Every recorded derivation, or those with ``table`` as target or source."""
        if table is None:
            return self.db.read(lambda conn: _rows(conn, "", ()))
        return self.db.read(
            lambda conn: _rows(conn, "WHERE target = ? OR source = ?", (table, table))
        )


def _rows(conn: sqlite3.Connection, where: str, params: tuple[str, ...]) -> list[Derivation]:
    return [
        Derivation(
            r["target"], r["source"], r["kind"], r["sql"], clock.from_epoch(r["recorded_at"])
        )
        for r in conn.execute(
            f"SELECT * FROM table_derivations {where} ORDER BY target COLLATE NOCASE, "
            "source COLLATE NOCASE",
            params,
        )
    ]


def _closure(conn: sqlite3.Connection, start: str, src_col: str, dst_col: str) -> set[str]:
    """Lower-cased names reachable from ``start`` following ``src_col -> dst_col``."""
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        node = frontier.pop()
        for r in conn.execute(
            f"SELECT {dst_col} AS n FROM table_derivations WHERE {src_col} = ?", (node,)
        ):
            name = str(r["n"])
            if name.lower() not in seen:
                seen.add(name.lower())
                frontier.append(name)
    return seen
