"""Shared views and recipients' IP access lists, kept in ``catalog.db`` as the ``shared_views`` component.

The tables are the ``shared_views`` component's (:mod:`helpers.catalog.views_schema`, made when a catalog
is opened), so the catalog's migration chain stays untouched:

- ``view_defs``: ``CREATE VIEW c.s.v AS SELECT ...``: the query with its table names fully qualified, the
  provider tables it reads (``sources``), the recipient properties it uses and its columns;
- ``share_views``: ``ALTER SHARE s ADD VIEW c.s.v [AS schema.name]`` entries (gone with their share);
- ``recipient_ip_access``: ``ALTER RECIPIENT r SET IP ACCESS LIST (...)`` (gone with the recipient).

Names are matched case-insensitively through a lower-cased ``*_key`` column (portable SQL: no
``COLLATE NOCASE``, ``ON CONFLICT`` upserts, ``?`` placeholders).
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from helpers.catalog import clock
from helpers.catalog.catalog import Catalog
from helpers.catalog.checks import check_comment
from helpers.catalog.db import Database
from helpers.catalog.names import split_name, validate_name
from helpers.catalog.views_schema import COMPONENT, MIGRATIONS
from helpers.exceptions import AlreadyExistsError, InvalidArgumentError, NotFoundError

__all__ = [
    "COMPONENT",
    "MAX_IP_ENTRIES",
    "SharedViewEntry",
    "ViewInfo",
    "ViewStore",
    "address_allowed",
    "normalize_ip_entries",
    "view_store",
]

#: Most entries an IP access list may hold (Databricks' limit).
MAX_IP_ENTRIES = 100


@dataclass(frozen=True)
class ViewInfo:
    """A provider view: ``name`` is ``catalog.schema.view``; ``query`` has fully qualified table names.

    :param sources: the provider tables (``catalog.schema.table``) the query reads.
    :param properties: the recipient properties ``current_recipient('prop')`` asks for (lower case).
    :param columns: ``(name, type)`` of each result column.
    """

    id: str
    name: str
    query: str
    sources: tuple[str, ...]
    properties: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    comment: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ViewInfo:
        return cls(
            id=row["id"],
            name=row["name"],
            query=row["query"],
            sources=tuple(json.loads(row["sources"])),
            properties=tuple(json.loads(row["props"])),
            columns=tuple((c[0], c[1]) for c in json.loads(row["columns"])),
            comment=row["comment"],
            created_at=clock.from_epoch(row["created_at"]),
        )


@dataclass(frozen=True)
class SharedViewEntry:
    """A view in a share, as recipients see it: ``share.schema.name``."""

    share: str
    share_id: str
    schema: str
    name: str
    view: ViewInfo
    comment: str | None
    added_at: datetime
    id: str

    @property
    def alias(self) -> str:
        return f"{self.schema}.{self.name}"


_ENTRY_SELECT = (
    "SELECT e.id AS entry_id, e.share_id, e.alias, e.comment AS entry_comment, e.added_at, v.* "
    "FROM share_views e JOIN view_defs v ON v.id = e.view_id"
)


def _entry(row: sqlite3.Row, share: str) -> SharedViewEntry:
    schema, name = row["alias"].split(".")
    return SharedViewEntry(
        share=share,
        share_id=row["share_id"],
        schema=schema,
        name=name,
        view=ViewInfo.from_row(row),
        comment=row["entry_comment"],
        added_at=clock.from_epoch(row["added_at"]),
        id=row["entry_id"],
    )


_READY: weakref.WeakSet[Database] = weakref.WeakSet()


def view_store(catalog: Catalog) -> ViewStore:
    """The :class:`ViewStore` of ``catalog`` (its tables created on first use)."""
    return ViewStore(catalog)


class ViewStore:
    """Views, share-view entries and IP access lists over one :class:`~helpers.catalog.Catalog`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.db = catalog.db
        if self.db not in _READY:
            self.db.ensure_schema(COMPONENT, MIGRATIONS)
            _READY.add(self.db)

    # -- views -----------------------------------------------------------------------------------

    def create_view(
        self,
        name: str,
        query: str,
        *,
        sources: Sequence[str],
        properties: Sequence[str],
        columns: Sequence[tuple[str, str]],
        comment: str | None = None,
        replace: bool = False,
        if_not_exists: bool = False,
    ) -> tuple[ViewInfo, bool]:
        """Store a view; returns ``(view, created)`` (``created`` False when IF NOT EXISTS found one).

        :raises AlreadyExistsError: the name is taken (by a view or a registered table).
        """
        cat, sch, _ = split_name(name, 3, "view", "catalog.schema.view")
        check_comment(comment)

        def body(conn: sqlite3.Connection) -> tuple[ViewInfo, bool]:
            if conn.execute("SELECT 1 FROM tables WHERE name = ?", (name,)).fetchone():
                raise AlreadyExistsError(
                    f"{name!r} is a registered table; choose another name for the view"
                )
            row = conn.execute(
                "SELECT * FROM view_defs WHERE name_key = ?", (name.lower(),)
            ).fetchone()
            values = (
                query,
                json.dumps(list(sources)),
                json.dumps(list(properties)),
                json.dumps([list(c) for c in columns]),
                comment,
            )
            if row is not None:
                if if_not_exists:
                    return ViewInfo.from_row(row), False
                if not replace:
                    raise AlreadyExistsError(
                        f"view {row['name']!r} already exists; use CREATE OR REPLACE VIEW or "
                        "DROP VIEW it first"
                    )
                conn.execute(
                    "UPDATE view_defs SET name = ?, query = ?, sources = ?, props = ?, columns = ?, "
                    "comment = ?, created_at = ? WHERE id = ?",
                    (name, *values, clock.now(), row["id"]),
                )
                view_id = row["id"]
            else:
                view_id = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO view_defs (id, name, name_key, catalog, schema_key, query, sources, "
                    "props, columns, comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (view_id, name, name.lower(), cat.lower(), sch.lower(), *values, clock.now()),
                )
            found = conn.execute("SELECT * FROM view_defs WHERE id = ?", (view_id,)).fetchone()
            return ViewInfo.from_row(found), True

        return self.db.write(body)

    def find_view(self, name: str) -> ViewInfo | None:
        """The view ``catalog.schema.view`` (case-insensitive), or None."""
        if not isinstance(name, str):
            return None
        row = self.db.read(
            lambda conn: conn.execute(
                "SELECT * FROM view_defs WHERE name_key = ?", (name.lower(),)
            ).fetchone()
        )
        return None if row is None else ViewInfo.from_row(row)

    def get_view(self, name: str) -> ViewInfo:
        """The view ``catalog.schema.view``. :raises NotFoundError:"""
        split_name(name, 3, "view", "catalog.schema.view")
        found = self.find_view(name)
        if found is None:
            raise NotFoundError(f"view {name!r} does not exist; SHOW VIEWS lists the views")
        return found

    def list_views(self, catalog: str | None = None, schema: str | None = None) -> list[ViewInfo]:
        """Views, optionally of one catalog (and schema), sorted by name."""
        sql, params = "SELECT * FROM view_defs WHERE 1 = 1", []
        if catalog is not None:
            sql += " AND catalog = ?"
            params.append(catalog.lower())
        if schema is not None:
            sql += " AND schema_key = ?"
            params.append(schema.lower())
        rows = self.db.read(
            lambda conn: conn.execute(sql + " ORDER BY name_key", params).fetchall()
        )
        return [ViewInfo.from_row(r) for r in rows]

    def drop_view(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a view; True when it existed. :raises InvalidArgumentError: while a share holds it."""
        split_name(name, 3, "view", "catalog.schema.view")

        def body(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT id, name FROM view_defs WHERE name_key = ?", (name.lower(),)
            ).fetchone()
            if row is None:
                if if_exists:
                    return False
                raise NotFoundError(f"view {name!r} does not exist; SHOW VIEWS lists the views")
            users = conn.execute(
                "SELECT s.name, e.alias FROM share_views e JOIN shares s ON s.id = e.share_id "
                "WHERE e.view_id = ? ORDER BY s.name",
                (row["id"],),
            ).fetchall()
            if users:
                where = ", ".join(f"{u['name']} (as {u['alias']})" for u in users)
                raise InvalidArgumentError(
                    f"view {row['name']!r} is shared in {where}; remove it from those shares first "
                    "(ALTER SHARE s REMOVE VIEW schema.name)"
                )
            conn.execute("DELETE FROM view_defs WHERE id = ?", (row["id"],))
            return True

        return self.db.write(body)

    # -- views in shares -------------------------------------------------------------------------

    def add_view_to_share(
        self, share: str, view: str, *, alias: str | None = None, comment: str | None = None
    ) -> SharedViewEntry:
        """``ALTER SHARE s ADD VIEW c.s.v [AS schema.name] [COMMENT ...]``.

        :raises NotFoundError: unknown share or view. :raises AlreadyExistsError: the name is taken in the
            share (by a table or another view).
        """
        validate_name(share, "share")
        check_comment(comment)
        info = self.get_view(view)
        _, sch, name = info.name.split(".")
        alias = alias or f"{sch}.{name}"
        split_name(alias, 2, "shared view name", "schema.name")

        with self.db.transaction() as conn:
            found = self.catalog.get_share(share)
            clash = [
                t
                for t in self.catalog.shared_tables(found.name)
                if f"{t.schema}.{t.name}".lower() == alias.lower()
            ]
            if (
                clash
                or conn.execute(
                    "SELECT 1 FROM share_views WHERE share_id = ? AND alias_key = ?",
                    (found.id, alias.lower()),
                ).fetchone()
            ):
                raise AlreadyExistsError(
                    f"share {found.name!r} already has a table or view {alias!r}; choose another "
                    "name with AS schema.name"
                )
            entry_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO share_views (id, share_id, view_id, alias, alias_key, comment, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry_id, found.id, info.id, alias, alias.lower(), comment, clock.now()),
            )
            row = conn.execute(_ENTRY_SELECT + " WHERE e.id = ?", (entry_id,)).fetchone()
            return _entry(row, found.name)

    def remove_view_from_share(self, share: str, alias: str) -> None:
        """``ALTER SHARE s REMOVE VIEW schema.name``. :raises NotFoundError:"""
        split_name(alias, 2, "shared view name", "schema.name")
        with self.db.transaction() as conn:
            found = self.catalog.get_share(share)
            cur = conn.execute(
                "DELETE FROM share_views WHERE share_id = ? AND alias_key = ?",
                (found.id, alias.lower()),
            )
            if cur.rowcount == 0:
                raise NotFoundError(
                    f"share {found.name!r} has no view {alias!r}; SHOW ALL IN SHARE lists what it holds"
                )

    def share_views(self, share: str) -> list[SharedViewEntry]:
        """The views of a share, sorted by schema and name. :raises NotFoundError: unknown share."""
        found = self.catalog.get_share(share)
        rows = self.db.read(
            lambda conn: conn.execute(
                _ENTRY_SELECT + " WHERE e.share_id = ? ORDER BY e.alias_key", (found.id,)
            ).fetchall()
        )
        return [_entry(r, found.name) for r in rows]

    def shared_view(self, share: str, schema: str, name: str) -> SharedViewEntry | None:
        """The view a share offers as ``schema.name`` (case-insensitive), or None (also for a bad share)."""
        key = f"{schema}.{name}".lower()

        def body(conn: sqlite3.Connection) -> SharedViewEntry | None:
            row = conn.execute(
                _ENTRY_SELECT + " JOIN shares s ON s.id = e.share_id "
                "WHERE s.name = ? AND e.alias_key = ?",
                (share, key),
            ).fetchone()
            if row is None:
                return None
            share_name = conn.execute(
                "SELECT name FROM shares WHERE id = ?", (row["share_id"],)
            ).fetchone()
            return _entry(row, share_name["name"])

        return self.db.read(body)

    def shares_of_view(self, view_id: str) -> list[str]:
        """``share (as alias)`` for each share holding the view."""
        rows = self.db.read(
            lambda conn: conn.execute(
                "SELECT s.name, e.alias FROM share_views e JOIN shares s ON s.id = e.share_id "
                "WHERE e.view_id = ? ORDER BY s.name",
                (view_id,),
            ).fetchall()
        )
        return [f"{r['name']} (as {r['alias']})" for r in rows]

    # -- IP access lists -------------------------------------------------------------------------

    def set_ip_access_list(self, recipient: str, entries: Iterable[str]) -> tuple[str, ...]:
        """Replace a recipient's IP access list; returns the normalized entries.

        :raises InvalidArgumentError: an entry is not an address or CIDR range, or the list is empty
            (UNSET IP ACCESS LIST removes it) or too long. :raises NotFoundError: unknown recipient.
        """
        normalized = normalize_ip_entries(entries)
        with self.db.transaction() as conn:
            found = self.catalog.get_recipient(recipient)
            conn.execute(
                "INSERT INTO recipient_ip_access (recipient_id, entries, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (recipient_id) DO UPDATE SET entries = excluded.entries, "
                "updated_at = excluded.updated_at",
                (found.id, json.dumps(list(normalized)), clock.now()),
            )
        return normalized

    def unset_ip_access_list(self, recipient: str) -> bool:
        """Remove a recipient's IP access list (every address allowed again); True when it had one."""
        with self.db.transaction() as conn:
            found = self.catalog.get_recipient(recipient)
            cur = conn.execute(
                "DELETE FROM recipient_ip_access WHERE recipient_id = ?", (found.id,)
            )
            return cur.rowcount > 0

    def ip_access_list(self, recipient_id: str) -> tuple[str, ...] | None:
        """The IP access list of the recipient with this id, or None when it has none."""

        def read(conn: sqlite3.Connection) -> tuple[str, ...] | None:
            row = conn.execute(
                "SELECT entries FROM recipient_ip_access WHERE recipient_id = ?", (recipient_id,)
            ).fetchone()
            return None if row is None else tuple(json.loads(row["entries"]))

        # remembered while the access generation holds (the IP lists are watched)
        return self.catalog.remembered("ip_access", recipient_id, read)


def normalize_ip_entries(entries: Iterable[str]) -> tuple[str, ...]:
    """Check IP access list entries (addresses or CIDR ranges, IPv4 or IPv6); their canonical text.

    :raises InvalidArgumentError: naming the bad entry and the fix.
    """
    if isinstance(entries, str):
        entries = [entries]
    out: list[str] = []
    for raw in entries:
        if not isinstance(raw, str) or not raw.strip():
            raise InvalidArgumentError(
                f"IP access list entries are addresses or CIDR ranges such as '192.0.2.0/24', got {raw!r}"
            )
        text = raw.strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise InvalidArgumentError(
                    f"{text!r} is not an IP address or CIDR range; write one such as "
                    "'192.0.2.0/24', '198.51.100.7' or '2001:db8::/32'"
                ) from exc
            raise InvalidArgumentError(
                f"{text!r} has host bits set; write the range as '{loose}'"
            ) from exc
        canonical = str(network) if network.num_addresses > 1 else str(network.network_address)
        if canonical not in out:
            out.append(canonical)
    if not out:
        raise InvalidArgumentError(
            "an IP access list needs at least one address; UNSET IP ACCESS LIST allows every address"
        )
    if len(out) > MAX_IP_ENTRIES:
        raise InvalidArgumentError(
            f"an IP access list holds at most {MAX_IP_ENTRIES} entries, got {len(out)}; "
            "use wider CIDR ranges"
        )
    return tuple(out)


def address_allowed(address: str | None, entries: Sequence[str]) -> bool:
    """Whether ``address`` (a client's IP) is inside one of ``entries`` (IPv4-mapped IPv6 counts as IPv4)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for entry in entries:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False
