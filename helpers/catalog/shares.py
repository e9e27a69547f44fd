"""The catalog's provider tables and shares: register Delta tables, create shares, add and remove entries.

``delta.`/path``` sources in shares are stored as the path itself (not registered as a provider table); such
an entry needs an explicit alias ``schema.table``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from helpers.catalog import clock, rows
from helpers.catalog.checks import (
    check_comment,
    coerce_partition,
    stable_id,
    validate_partition,
    validate_start_version,
)
from helpers.catalog.db import Database
from helpers.catalog.governance import forget_share, pins_of
from helpers.catalog.models import (
    PartitionClause,
    Share,
    SharedTable,
    ShareEntry,
    TableInfo,
    filter_from_json,
)
from helpers.catalog.names import (
    name_key,
    parse_delta_path,
    partition_columns,
    require_delta,
    split_name,
    validate_name,
)
from helpers.catalog.rows import ENTRY_SELECT, table_row
from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotADeltaTableError,
    NotFoundError,
)

__all__ = ["SharesMixin"]

_T = TypeVar("_T")


class SharesMixin:
    """Tables and shares of :class:`~helpers.catalog.Catalog`."""

    db: Database
    if TYPE_CHECKING:  # provided by AccessMixin

        def remembered(
            self, kind: str, key: Hashable, read: Callable[[sqlite3.Connection], _T]
        ) -> _T: ...

    # -- tables ----------------------------------------------------------------------------------

    def register_table(
        self, name: str, location: str | os.PathLike[str], *, replace: bool = False
    ) -> TableInfo:
        """Register the Delta table at ``location`` as ``catalog.schema.table``.

        :param replace: point an existing name at the new location instead of failing.
        :raises NotADeltaTableError: when ``location`` has no ``_delta_log``.
        :raises AlreadyExistsError: when the name is taken and ``replace`` is False.
        """
        cat, sch, tbl = split_name(name, 3, "table", "catalog.schema.table")
        from helpers.storage.s3 import is_s3

        if is_s3(os.fspath(location)):
            # an S3-compatible table: its _delta_log is checked through the store (settings from the
            # environment, never stored here)
            from helpers.storage.delta_log import has_delta_log

            path = os.fspath(location).rstrip("/")
            if not has_delta_log(path):
                raise NotADeltaTableError(
                    f"{path} is not a Delta table (no _delta_log objects); write the table there first"
                )
        else:
            path = str(require_delta(location))

        def body(conn: sqlite3.Connection) -> TableInfo:
            now = clock.now()
            row = rows.colliding_row(conn, "tables", name)  # the same name under the name rule
            if row is not None:
                if not replace:
                    raise AlreadyExistsError(
                        f"table {row['name']!r} is already registered; use replace=True "
                        "(or CREATE OR REPLACE TABLE) to point it at a new location"
                    )
                conn.execute(
                    "UPDATE tables SET name = ?, catalog = ?, schema_name = ?, table_name = ?, "
                    "location = ?, registered_at = ? WHERE id = ?",
                    (name, cat, sch, tbl, path, now, row["id"]),
                )
            else:
                conn.execute(
                    "INSERT INTO tables (id, name, catalog, schema_name, table_name, location, "
                    "registered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (str(uuid.uuid4()), name, cat, sch, tbl, path, now),
                )
            return TableInfo.from_row(table_row(conn, name))

        return self.db.write(body)

    def get_table(self, name: str) -> TableInfo:
        """The registered table ``catalog.schema.table`` (case-insensitive).

        :raises NotFoundError: when it is not registered.
        """
        split_name(name, 3, "table", "catalog.schema.table")
        return self.db.read(lambda conn: TableInfo.from_row(table_row(conn, name)))

    def list_tables(self, catalog: str | None = None, schema: str | None = None) -> list[TableInfo]:
        """Registered tables, optionally only those of ``catalog`` (and ``schema``), sorted by name."""
        sql = "SELECT * FROM tables WHERE 1 = 1"
        params: list[Any] = []
        if catalog is not None:
            sql += " AND catalog = ?"
            params.append(catalog)
        if schema is not None:
            sql += " AND schema_name = ?"
            params.append(schema)
        sql += " ORDER BY name COLLATE NOCASE"
        return self.db.read(lambda conn: [TableInfo.from_row(r) for r in conn.execute(sql, params)])

    def unregister_table(self, name: str, *, if_exists: bool = False) -> bool:
        """Forget a registered table (its files are left alone); True when something was removed.

        :raises InvalidArgumentError: when a share names it explicitly (remove it from the share first).
        """
        split_name(name, 3, "table", "catalog.schema.table")

        def body(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT * FROM tables WHERE name = ?", (name,)).fetchone()
            if row is None:
                if if_exists:
                    return False
                table_row(conn, name)
            users = conn.execute(
                ENTRY_SELECT + " WHERE e.kind = 'table' AND e.source = ?", (name,)
            ).fetchall()
            if users:
                where = ", ".join(f"{u['share_name']} (as {u['alias']})" for u in users)
                raise InvalidArgumentError(
                    f"table {name!r} is shared in {where}; remove it from those shares first "
                    "(ALTER SHARE s REMOVE TABLE schema.table)"
                )
            conn.execute("DELETE FROM tables WHERE id = ?", (row["id"],))
            return True

        return self.db.write(body)

    # -- shares ----------------------------------------------------------------------------------

    def create_share(
        self, name: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> Share:
        """Create a share; with ``if_not_exists`` an existing share is returned unchanged.

        :raises AlreadyExistsError: when it exists and ``if_not_exists`` is False.
        """
        validate_name(name, "share")
        check_comment(comment)

        def body(conn: sqlite3.Connection) -> Share:
            row = rows.colliding_row(conn, "shares", name)  # the same name under the name rule
            if row is not None:
                if if_not_exists:
                    return Share.from_row(row)
                raise AlreadyExistsError(
                    f"share {row['name']!r} already exists (names match case-insensitively, Unicode "
                    "included); use CREATE SHARE IF NOT EXISTS or another name"
                )
            conn.execute(
                "INSERT INTO shares (id, name, comment, created_at) VALUES (?, ?, ?, ?)",
                (str(uuid.uuid4()), name, comment, clock.now()),
            )
            return Share.from_row(rows.share_row(conn, name))

        return self.db.write(body)

    def drop_share(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a share with its entries and grants; True when it existed.

        :raises NotFoundError: when it does not exist and ``if_exists`` is False.
        """
        validate_name(name, "share")

        def body(conn: sqlite3.Connection) -> bool:
            row = rows.find_row(conn, "shares", name)
            if row is None:
                if if_exists:
                    return False
                row = rows.share_row(conn, name)  # raises NotFoundError
            # ON DELETE CASCADE would do it; explicit deletes keep it right even with foreign_keys off
            conn.execute("DELETE FROM share_entries WHERE share_id = ?", (row["id"],))
            conn.execute("DELETE FROM grants WHERE share_id = ?", (row["id"],))
            forget_share(conn, row["id"])
            conn.execute("DELETE FROM shares WHERE id = ?", (row["id"],))
            return True

        return self.db.write(body)

    def get_share(self, name: str) -> Share:
        """The share ``name`` (case-insensitive). :raises NotFoundError:"""
        validate_name(name, "share")
        return self.db.read(lambda conn: Share.from_row(rows.share_row(conn, name)))

    def list_shares(self) -> list[Share]:
        """Every share, sorted by name."""
        return self.db.read(
            lambda conn: [
                Share.from_row(r)
                for r in conn.execute("SELECT * FROM shares ORDER BY name COLLATE NOCASE")
            ]
        )

    def add_table_to_share(
        self,
        share: str,
        source: str,
        *,
        alias: str | None = None,
        comment: str | None = None,
        history: bool = False,
        partition: Iterable[PartitionClause | tuple[Any, ...]] = (),
        start_version: int | None = None,
    ) -> ShareEntry:
        """Add a table to a share (``ALTER SHARE s ADD TABLE source [COMMENT] [PARTITION] [AS alias] [WITH HISTORY]``).

        :param source: ``catalog.schema.table`` (a registered table) or ``delta.`/path``` (then ``alias`` is
            required; the path is stored, not registered).
        :param alias: ``schema.table`` the recipients see; default: the source's ``schema.table``.
        :param partition: clauses ``PartitionClause(column, value, is_property)`` or tuples
            ``(column, value[, is_property])``; columns must be partition columns of the table.
        :param start_version: first version recipients may read (history/CDF); None = all.
        :raises NotFoundError: unknown share or table. :raises AlreadyExistsError: alias taken.
        :raises InvalidArgumentError: bad partition filter or start version.
        """
        validate_name(share, "share")
        check_comment(comment)
        if not isinstance(source, str):
            raise InvalidArgumentError(
                f"table source must be a string, got {type(source).__name__}"
            )
        clauses = coerce_partition(partition)
        if start_version is not None and (
            isinstance(start_version, bool)
            or not isinstance(start_version, int)
            or start_version < 0
        ):
            raise InvalidArgumentError(
                f"start version must be a non-negative whole number, got {start_version!r}"
            )
        stored_source, location, alias = _table_source(source, alias)

        # The Delta table is read before the transaction: keep the write lock short.
        table_location = location
        if table_location is None:
            table_location = self.get_table(source).location
        if clauses:
            validate_partition(clauses, partition_columns(table_location), source)
        if start_version is not None:
            validate_start_version(start_version, table_location, source)

        def body(conn: sqlite3.Connection) -> ShareEntry:
            share_row = rows.share_row(conn, share)
            if location is None:
                trow = table_row(conn, source)
                if trow["location"] != table_location:  # re-registered meanwhile: validate again
                    raise InvalidArgumentError(
                        f"table {source!r} changed location while being added; run the statement again"
                    )
            clash = rows.colliding_alias(conn, share_row["id"], "table", alias)
            if clash is not None:
                raise AlreadyExistsError(
                    f"share {share_row['name']!r} already has a table {clash['alias']!r}; "
                    "choose another name with AS schema.table, or REMOVE TABLE it first"
                )
            entry_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO share_entries (id, share_id, kind, source, path, alias, comment, history, "
                "start_version, partition_filter, added_at) VALUES (?, ?, 'table', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry_id,
                    share_row["id"],
                    stored_source,
                    location,
                    alias,
                    comment,
                    int(bool(history)),
                    start_version,
                    json.dumps([c.to_json() for c in clauses]),
                    clock.now(),
                ),
            )
            return ShareEntry.from_row(
                conn.execute(ENTRY_SELECT + " WHERE e.id = ?", (entry_id,)).fetchone()
            )

        return self.db.write(body)

    def add_schema_to_share(self, share: str, source: str, *, history: bool = False) -> ShareEntry:
        """Add a whole schema ``catalog.schema``; it also covers tables registered under it later.

        Recipients see its tables as ``<schema>.<table>``. An empty schema is accepted (its tables may be
        generated later).

        :raises NotFoundError: unknown share. :raises AlreadyExistsError: a schema of that name is shared.
        """
        validate_name(share, "share")
        _, sch = split_name(source, 2, "schema", "catalog.schema")

        def body(conn: sqlite3.Connection) -> ShareEntry:
            share_row = rows.share_row(conn, share)
            clash = rows.colliding_alias(conn, share_row["id"], "schema", sch)
            if clash is not None:
                raise AlreadyExistsError(
                    f"share {share_row['name']!r} already has schema {sch!r} (from {clash['source']}); "
                    "REMOVE SCHEMA it first"
                )
            entry_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO share_entries (id, share_id, kind, source, alias, history, added_at) "
                "VALUES (?, ?, 'schema', ?, ?, ?, ?)",
                (entry_id, share_row["id"], source, sch, int(bool(history)), clock.now()),
            )
            return ShareEntry.from_row(
                conn.execute(ENTRY_SELECT + " WHERE e.id = ?", (entry_id,)).fetchone()
            )

        return self.db.write(body)

    def remove_table_from_share(self, share: str, alias: str) -> None:
        """Remove the table entry ``schema.table`` from a share.

        :raises NotFoundError: unknown share, or no such table entry.
        """
        validate_name(share, "share")
        split_name(alias, 2, "table alias", "schema.table")

        def body(conn: sqlite3.Connection) -> None:
            share_row = rows.share_row(conn, share)
            cur = conn.execute(
                "DELETE FROM share_entries WHERE share_id = ? AND kind = 'table' AND alias = ?",
                (share_row["id"], alias),
            )
            if cur.rowcount == 0:
                schema = alias.split(".")[0]
                covered = conn.execute(
                    "SELECT source FROM share_entries WHERE share_id = ? AND kind = 'schema' AND alias = ?",
                    (share_row["id"], schema),
                ).fetchone()
                hint = (
                    f"; it comes from schema {covered['source']}, remove that with REMOVE SCHEMA"
                    if covered
                    else "; SHOW ALL IN SHARE lists what it holds"
                )
                raise NotFoundError(f"share {share_row['name']!r} has no table {alias!r}{hint}")
            forget_share(conn, share_row["id"], alias)

        self.db.write(body)

    def remove_schema_from_share(self, share: str, schema: str) -> None:
        """Remove a schema entry (given as ``schema`` or ``catalog.schema``) from a share.

        :raises NotFoundError: unknown share or schema entry.
        """
        validate_name(share, "share")
        alias = schema.split(".")[-1] if isinstance(schema, str) else schema
        validate_name(alias, "schema", allow_dot=False)

        def body(conn: sqlite3.Connection) -> None:
            share_row = rows.share_row(conn, share)
            cur = conn.execute(
                "DELETE FROM share_entries WHERE share_id = ? AND kind = 'schema' AND alias = ?",
                (share_row["id"], alias),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"share {share_row['name']!r} has no schema {schema!r}")
            forget_share(conn, share_row["id"], alias + ".")

        self.db.write(body)

    def share_entries(self, share: str) -> list[ShareEntry]:
        """The entries of a share as added (schema entries not expanded), in the order added."""
        validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[ShareEntry]:
            row = rows.share_row(conn, share)
            return [
                ShareEntry.from_row(r)
                for r in conn.execute(
                    ENTRY_SELECT + " WHERE e.share_id = ? ORDER BY e.seq", (row["id"],)
                )
            ]

        return self.db.read(body)

    def _shared_tables(self, conn: sqlite3.Connection, share: str) -> list[SharedTable]:
        share_row = rows.share_row(conn, share)
        found: dict[tuple[str, str], SharedTable] = {}
        entries = conn.execute(
            "SELECT * FROM share_entries WHERE share_id = ? ORDER BY seq", (share_row["id"],)
        ).fetchall()
        # Schema entries first, then explicit table entries, which win on a name clash.
        for entry in sorted(entries, key=lambda e: (e["kind"] != "schema", e["seq"])):
            if entry["kind"] == "schema":
                cat, sch = entry["source"].split(".")
                for t in conn.execute(
                    "SELECT * FROM tables WHERE catalog = ? AND schema_name = ? ORDER BY table_name COLLATE NOCASE",
                    (cat, sch),
                ):
                    key = (name_key(entry["alias"]), name_key(t["table_name"]))
                    found[key] = SharedTable(
                        share=share_row["name"],
                        schema=entry["alias"],
                        name=t["table_name"],
                        location=t["location"],
                        history=bool(entry["history"]),
                        start_version=None,
                        partition_filter=(),
                        # bound to the entry and the registered table: removed and added again, or
                        # re-registered, it is a new table with a new id (old URLs and tokens die)
                        id=stable_id(
                            f"{share_row['id']}/{entry['id']}/{t['id']}",
                            entry["alias"],
                            t["table_name"],
                        ),
                        comment=None,
                        source=t["name"],
                        share_id=share_row["id"],
                    )
            else:
                location = entry["path"]
                if location is None:
                    t = conn.execute(
                        "SELECT location FROM tables WHERE name = ?", (entry["source"],)
                    ).fetchone()
                    if t is None:  # unregistered behind our back (unregister_table refuses this)
                        continue
                    location = t["location"]
                sch, tbl = entry["alias"].split(".")
                found[(name_key(sch), name_key(tbl))] = SharedTable(
                    share=share_row["name"],
                    schema=sch,
                    name=tbl,
                    location=location,
                    history=bool(entry["history"]),
                    start_version=entry["start_version"],
                    partition_filter=filter_from_json(entry["partition_filter"]),
                    id=stable_id(f"{share_row['id']}/{entry['id']}", sch, tbl),  # new when re-added
                    comment=entry["comment"],
                    source=entry["source"],
                    share_id=share_row["id"],
                )
        pins = {name_key(k): v for k, v in pins_of(conn, share_row["id"]).items()}
        if pins:  # a pin holds while the entry still points at the table it was set on
            for key, t in found.items():
                pin = pins.get(f"{key[0]}.{key[1]}")
                if pin is not None and pin[0] == str(t.location):
                    found[key] = dataclasses.replace(t, pinned_version=pin[1])
        return sorted(found.values(), key=lambda t: (t.schema.lower(), t.name.lower()))

    def shared_tables(self, share: str) -> list[SharedTable]:
        """The tables recipients of ``share`` see, schema entries expanded over the tables registered now.

        Sorted by schema then table name. :raises NotFoundError: unknown share.
        """
        validate_name(share, "share")
        # remembered while the access generation holds: shares, entries, tables and pins are watched
        found = self.remembered(
            "shared_tables", share, lambda conn: tuple(self._shared_tables(conn, share))
        )
        return list(found)

    def shared_schemas(self, share: str) -> list[str]:
        """Schema names of a share: those of schema entries (even empty ones) and of its tables."""
        validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[str]:
            share_row = rows.share_row(conn, share)
            names = {t.schema.lower(): t.schema for t in self._shared_tables(conn, share)}
            for r in conn.execute(
                "SELECT alias FROM share_entries WHERE share_id = ? AND kind = 'schema'",
                (share_row["id"],),
            ):
                names.setdefault(r["alias"].lower(), r["alias"])
            return sorted(names.values(), key=str.lower)

        return self.db.read(body)

    def get_shared_table(self, share: str, schema: str, table: str) -> SharedTable:
        """One shared table by ``share``/``schema``/``table`` (case-insensitive).

        :raises NotFoundError: unknown share, schema or table.
        """
        validate_name(share, "share")
        want = (name_key(str(schema)), name_key(str(table)))
        for table_info in self.shared_tables(share):
            if (name_key(table_info.schema), name_key(table_info.name)) == want:
                return table_info
        raise NotFoundError(f"share {share!r} has no table {schema}.{table}")


def _table_source(source: str, alias: str | None) -> tuple[str, str | None, str]:
    """``(stored source, path location or None, alias)`` of an ADD TABLE source, checked."""
    delta_path = parse_delta_path(source)
    if delta_path is not None:
        location: str | None = str(require_delta(delta_path))
        stored_source = f"delta.`{location}`"
        if alias is None:
            raise InvalidArgumentError(
                f"a path source needs a name for recipients: add AS schema.table to ADD TABLE {source}"
            )
    else:
        _, sch, tbl = split_name(source, 3, "table", "catalog.schema.table")
        stored_source = source
        location = None
        if alias is None:
            alias = f"{sch}.{tbl}"
    split_name(alias, 2, "table alias", "schema.table")
    return stored_source, location, alias
