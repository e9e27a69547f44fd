"""Catalogs and schemas as objects, and which tables the lab manages (component ``objects``).

Before this component, catalogs and schemas existed only through the tables registered under them; they
still do (an *implicit* catalog or schema is listed with no comment and no creation time), and ``CREATE
CATALOG`` / ``CREATE SCHEMA`` add *explicit* ones with a comment. ``CREATE CATALOG`` also creates the
catalog's ``default`` schema, as Databricks does. A *managed* table is one the lab created (``CREATE TABLE
name (columns)`` or ``... AS SELECT``) and whose files it owns; other tables are external: dropping them only
forgets the name.

Names compare case-insensitively for ASCII letters (``name_key`` holds the ASCII-lower-cased name, which
also works on backends without ``COLLATE NOCASE``). The component's tables are created by
:meth:`Database.ensure_schema` with :data:`COMPONENT` and :data:`MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from helpers.catalog import clock
from helpers.catalog.checks import check_comment
from helpers.catalog.db import Database
from helpers.catalog.models import TableInfo
from helpers.catalog.names import split_name, validate_name
from helpers.catalog.rows import ENTRY_SELECT, table_row
from helpers.exceptions import AlreadyExistsError, InvalidArgumentError, NotFoundError

__all__ = [
    "COMPONENT",
    "DEFAULT_SCHEMA",
    "MIGRATIONS",
    "CatalogInfo",
    "DroppedTable",
    "ObjectsMixin",
    "SchemaInfo",
    "name_key",
]

#: The component name of these tables in ``schema_components``.
COMPONENT = "objects"
#: The schema ``CREATE CATALOG`` creates in every new catalog.
DEFAULT_SCHEMA = "default"

_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_V1 = (
    "CREATE TABLE uc_catalogs (id TEXT PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE, "
    "comment TEXT, created_at REAL NOT NULL)",
    "CREATE TABLE uc_schemas (id TEXT PRIMARY KEY, catalog_key TEXT NOT NULL, name TEXT NOT NULL, "
    "name_key TEXT NOT NULL, comment TEXT, created_at REAL NOT NULL, UNIQUE (catalog_key, name_key))",
    "CREATE TABLE managed_tables (table_id TEXT PRIMARY KEY REFERENCES tables (id) ON DELETE CASCADE, "
    "location TEXT NOT NULL, created_at REAL NOT NULL)",
)


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    for statement in _V1:
        conn.execute(statement)


#: ``MIGRATIONS[n]`` brings the component from version n-1 to n.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_1}


def name_key(name: str) -> str:
    """The name as compared: ASCII letters lower-cased (like SQLite's NOCASE)."""
    return name.translate(_LOWER)


@dataclass(frozen=True)
class CatalogInfo:
    """A catalog; ``created_at`` is None for an implicit one (only tables registered under it)."""

    name: str
    comment: str | None
    created_at: datetime | None


@dataclass(frozen=True)
class SchemaInfo:
    """A schema ``catalog.name``; ``created_at`` is None for an implicit one."""

    catalog: str
    name: str
    comment: str | None
    created_at: datetime | None

    @property
    def full_name(self) -> str:
        return f"{self.catalog}.{self.name}"


@dataclass(frozen=True)
class DroppedTable:
    """A table a DROP removed from the catalog; the caller deletes a managed table's files."""

    info: TableInfo
    managed: bool


class ObjectsMixin:
    """Catalogs, schemas and managed tables of :class:`~helpers.catalog.Catalog`."""

    db: Database

    # -- catalogs --------------------------------------------------------------------------------

    def create_catalog(
        self, name: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> bool:
        """Create a catalog (with its ``default`` schema); True when created, False when it existed.

        An implicit catalog (tables registered under it) becomes explicit with the comment.
        :raises AlreadyExistsError: when it exists explicitly and ``if_not_exists`` is False.
        """
        validate_name(name, "catalog", allow_dot=False)
        check_comment(comment)

        def body(conn: sqlite3.Connection) -> bool:
            row = _catalog_row(conn, name)
            if row is not None:
                if if_not_exists:
                    return False
                raise AlreadyExistsError(
                    f"catalog {row['name']!r} already exists; use CREATE CATALOG IF NOT EXISTS or another name"
                )
            implicit = _implicit_catalog(conn, name)
            conn.execute(
                "INSERT INTO uc_catalogs (id, name, name_key, comment, created_at) VALUES (?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), implicit or name, name_key(name), comment, clock.now()),
            )
            if _schema_row(conn, name, DEFAULT_SCHEMA) is None:
                _insert_schema(conn, name, DEFAULT_SCHEMA, None)
            return implicit is None

        return self.db.write(body)

    def get_catalog(self, name: str) -> CatalogInfo:
        """The catalog ``name`` (explicit or implicit). :raises NotFoundError:"""
        validate_name(name, "catalog", allow_dot=False)

        def body(conn: sqlite3.Connection) -> CatalogInfo:
            info = _catalog_info(conn, name)
            if info is None:
                raise NotFoundError(
                    f"catalog {name!r} does not exist; create it with CREATE CATALOG {name}"
                )
            return info

        return self.db.read(body)

    def list_catalogs(self) -> list[CatalogInfo]:
        """Every catalog, explicit and implicit, sorted by name."""

        def body(conn: sqlite3.Connection) -> list[CatalogInfo]:
            found: dict[str, CatalogInfo] = {}
            for row in conn.execute("SELECT name, comment, created_at FROM uc_catalogs"):
                found[name_key(row["name"])] = CatalogInfo(
                    row["name"], row["comment"], clock.from_epoch(row["created_at"])
                )
            for row in conn.execute("SELECT DISTINCT catalog FROM tables"):
                found.setdefault(name_key(row["catalog"]), CatalogInfo(row["catalog"], None, None))
            return [found[k] for k in sorted(found)]

        return self.db.read(body)

    def drop_catalog(
        self, name: str, *, if_exists: bool = False, cascade: bool = False
    ) -> list[DroppedTable] | None:
        """Drop a catalog; None when it did not exist (``if_exists``), else the tables it removed.

        Without ``cascade`` (RESTRICT) the catalog must hold no table and no schema but ``default``.
        :raises InvalidArgumentError: not empty (RESTRICT), or a table or schema in it is shared.
        """
        validate_name(name, "catalog", allow_dot=False)

        def body(conn: sqlite3.Connection) -> list[DroppedTable] | None:
            if _catalog_info(conn, name) is None:
                if if_exists:
                    return None
                raise NotFoundError(
                    f"catalog {name!r} does not exist (DROP CATALOG IF EXISTS skips it)"
                )
            schemas = [s for s in _schemas(conn, name) if name_key(s.name) != DEFAULT_SCHEMA]
            tables = _tables_in(conn, name, None)
            if not cascade and (schemas or tables):
                what = ", ".join(s.full_name for s in schemas) or ", ".join(t.name for t in tables)
                raise InvalidArgumentError(
                    f"catalog {name!r} is not empty ({what}); drop those first or use DROP CATALOG "
                    f"{name} CASCADE"
                )
            dropped = _drop_tables(conn, tables, f"catalog {name!r}")
            _refuse_shared_schemas(conn, name, None)
            conn.execute("DELETE FROM uc_schemas WHERE catalog_key = ?", (name_key(name),))
            conn.execute("DELETE FROM uc_catalogs WHERE name_key = ?", (name_key(name),))
            return dropped

        return self.db.write(body)

    # -- schemas ---------------------------------------------------------------------------------

    def create_schema(
        self, catalog: str, schema: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> bool:
        """Create ``catalog.schema``; True when created, False when it existed (``if_not_exists``).

        :raises NotFoundError: the catalog does not exist. :raises AlreadyExistsError: it exists.
        """
        validate_name(catalog, "catalog", allow_dot=False)
        validate_name(schema, "schema", allow_dot=False)
        check_comment(comment)

        def body(conn: sqlite3.Connection) -> bool:
            cat = _catalog_info(conn, catalog)
            if cat is None:
                raise NotFoundError(
                    f"catalog {catalog!r} does not exist; create it with CREATE CATALOG {catalog} "
                    "(or USE CATALOG an existing one)"
                )
            existing = _schema_info(conn, catalog, schema)
            if existing is not None and existing.created_at is not None:
                if if_not_exists:
                    return False
                raise AlreadyExistsError(
                    f"schema {existing.full_name!r} already exists; use CREATE SCHEMA IF NOT EXISTS"
                )
            _insert_schema(conn, cat.name, existing.name if existing else schema, comment)
            return existing is None

        return self.db.write(body)

    def get_schema(self, catalog: str, schema: str) -> SchemaInfo:
        """The schema ``catalog.schema`` (explicit or implicit). :raises NotFoundError:"""

        def body(conn: sqlite3.Connection) -> SchemaInfo:
            info = _schema_info(conn, catalog, schema)
            if info is None:
                raise NotFoundError(
                    f"schema {catalog}.{schema} does not exist; create it with CREATE SCHEMA "
                    f"{catalog}.{schema}"
                )
            return info

        return self.db.read(body)

    def list_schemas(self, catalog: str | None = None) -> list[SchemaInfo]:
        """Schemas (of ``catalog``, else of every catalog), explicit and implicit, sorted by name."""
        return self.db.read(lambda conn: _schemas(conn, catalog))

    def drop_schema(
        self, catalog: str, schema: str, *, if_exists: bool = False, cascade: bool = False
    ) -> list[DroppedTable] | None:
        """Drop ``catalog.schema``; None when it did not exist (``if_exists``), else the tables removed.

        :raises InvalidArgumentError: it holds tables (RESTRICT), or it or one of its tables is shared.
        """

        def body(conn: sqlite3.Connection) -> list[DroppedTable] | None:
            if _schema_info(conn, catalog, schema) is None:
                if if_exists:
                    return None
                raise NotFoundError(
                    f"schema {catalog}.{schema} does not exist (DROP SCHEMA IF EXISTS skips it)"
                )
            tables = _tables_in(conn, catalog, schema)
            if tables and not cascade:
                raise InvalidArgumentError(
                    f"schema {catalog}.{schema} is not empty ({', '.join(t.name for t in tables)}); drop "
                    f"its tables first or use DROP SCHEMA {catalog}.{schema} CASCADE"
                )
            _refuse_shared_schemas(conn, catalog, schema)
            dropped = _drop_tables(conn, tables, f"schema {catalog}.{schema}")
            conn.execute(
                "DELETE FROM uc_schemas WHERE catalog_key = ? AND name_key = ?",
                (name_key(catalog), name_key(schema)),
            )
            return dropped

        return self.db.write(body)

    # -- comments --------------------------------------------------------------------------------

    def set_object_comment(self, kind: str, name: str, comment: str | None) -> str:
        """``COMMENT ON CATALOG|SCHEMA name IS ...``; an implicit object becomes explicit. Returns its name.

        :param name: ``catalog`` or ``catalog.schema``.
        """
        check_comment(comment)
        if kind == "catalog":
            validate_name(name, "catalog", allow_dot=False)
            parts = [name]
        elif kind == "schema":
            parts = list(split_name(name, 2, "schema", "catalog.schema"))
        else:
            raise InvalidArgumentError(f"set_object_comment takes catalog or schema, not {kind!r}")

        def body(conn: sqlite3.Connection) -> str:
            if kind == "catalog":
                info = _catalog_info(conn, parts[0])
                if info is None:
                    raise NotFoundError(f"catalog {name!r} does not exist")
                if info.created_at is None:
                    conn.execute(
                        "INSERT INTO uc_catalogs (id, name, name_key, comment, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (str(uuid.uuid4()), info.name, name_key(info.name), comment, clock.now()),
                    )
                else:
                    conn.execute(
                        "UPDATE uc_catalogs SET comment = ? WHERE name_key = ?",
                        (comment, name_key(info.name)),
                    )
                return info.name
            sinfo = _schema_info(conn, parts[0], parts[1])
            if sinfo is None:
                raise NotFoundError(f"schema {name} does not exist")
            if sinfo.created_at is None:
                _insert_schema(conn, sinfo.catalog, sinfo.name, comment)
            else:
                conn.execute(
                    "UPDATE uc_schemas SET comment = ? WHERE catalog_key = ? AND name_key = ?",
                    (comment, name_key(sinfo.catalog), name_key(sinfo.name)),
                )
            return sinfo.full_name

        return self.db.write(body)

    # -- managed tables --------------------------------------------------------------------------

    def mark_managed(self, table: str) -> None:
        """Record that the lab owns the files of the registered table ``table``."""

        def body(conn: sqlite3.Connection) -> None:
            row = table_row(conn, table)
            conn.execute(
                "INSERT INTO managed_tables (table_id, location, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (table_id) DO UPDATE SET location = excluded.location",
                (row["id"], row["location"], clock.now()),
            )

        self.db.write(body)

    def is_managed(self, table: str) -> bool:
        """Whether the registered table ``table`` is managed (its files are the lab's)."""

        def body(conn: sqlite3.Connection) -> bool:
            row = table_row(conn, table)
            return _managed(conn, row["id"], row["location"])

        return self.db.read(body)

    def drop_table(self, table: str, *, if_exists: bool = False) -> DroppedTable | None:
        """Forget ``table``; None when it was not registered (``if_exists``).

        :raises InvalidArgumentError: a share names it (with the share's name).
        """
        split_name(table, 3, "table", "catalog.schema.table")

        def body(conn: sqlite3.Connection) -> DroppedTable | None:
            row = conn.execute("SELECT * FROM tables WHERE name = ?", (table,)).fetchone()
            if row is None:
                if if_exists:
                    return None
                table_row(conn, table)
            return _drop_tables(conn, [TableInfo.from_row(row)], f"table {table!r}")[0]

        return self.db.write(body)

    def rename_table(self, table: str, new_name: str) -> TableInfo:
        """``ALTER TABLE ... RENAME TO``: the new name in the same catalog; share entries follow it.

        :raises AlreadyExistsError: the new name is taken. :raises NotFoundError: its schema is missing.
        """
        cat, sch, tbl = split_name(new_name, 3, "table", "catalog.schema.table")

        def body(conn: sqlite3.Connection) -> TableInfo:
            old = TableInfo.from_row(table_row(conn, table))
            if name_key(old.catalog) != name_key(cat):
                raise InvalidArgumentError(
                    f"a table can move to another schema of its catalog {old.catalog}, not to catalog {cat}"
                )
            if _schema_info(conn, cat, sch) is None:
                raise NotFoundError(
                    f"schema {cat}.{sch} does not exist; create it with CREATE SCHEMA"
                )
            clash = conn.execute("SELECT name FROM tables WHERE name = ?", (new_name,)).fetchone()
            if clash is not None and name_key(clash["name"]) != name_key(old.name):
                raise AlreadyExistsError(
                    f"table {clash['name']!r} already exists; pick another name"
                )
            conn.execute(
                "UPDATE tables SET name = ?, catalog = ?, schema_name = ?, table_name = ? WHERE name = ?",
                (new_name, old.catalog, sch, tbl, old.name),
            )
            conn.execute(
                "UPDATE share_entries SET source = ? WHERE kind = 'table' AND source = ?",
                (new_name, old.name),
            )
            return TableInfo.from_row(table_row(conn, new_name))

        return self.db.write(body)


# -- helpers (inside transactions) ---------------------------------------------------------------


def _catalog_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM uc_catalogs WHERE name_key = ?", (name_key(name),)
    ).fetchone()
    return row


def _implicit_catalog(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT catalog FROM tables WHERE catalog = ? LIMIT 1", (name,)).fetchone()
    return None if row is None else str(row["catalog"])


def _catalog_info(conn: sqlite3.Connection, name: str) -> CatalogInfo | None:
    row = _catalog_row(conn, name)
    if row is not None:
        return CatalogInfo(row["name"], row["comment"], clock.from_epoch(row["created_at"]))
    implicit = _implicit_catalog(conn, name)
    return None if implicit is None else CatalogInfo(implicit, None, None)


def _schema_row(conn: sqlite3.Connection, catalog: str, schema: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM uc_schemas WHERE catalog_key = ? AND name_key = ?",
        (name_key(catalog), name_key(schema)),
    ).fetchone()
    return row


def _schema_info(conn: sqlite3.Connection, catalog: str, schema: str) -> SchemaInfo | None:
    cat = _catalog_info(conn, catalog)
    if cat is None:
        return None
    row = _schema_row(conn, catalog, schema)
    if row is not None:
        return SchemaInfo(
            cat.name, row["name"], row["comment"], clock.from_epoch(row["created_at"])
        )
    implicit = conn.execute(
        "SELECT schema_name FROM tables WHERE catalog = ? AND schema_name = ? LIMIT 1",
        (catalog, schema),
    ).fetchone()
    return None if implicit is None else SchemaInfo(cat.name, implicit["schema_name"], None, None)


def _insert_schema(
    conn: sqlite3.Connection, catalog: str, schema: str, comment: str | None
) -> None:
    conn.execute(
        "INSERT INTO uc_schemas (id, catalog_key, name, name_key, comment, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (str(uuid.uuid4()), name_key(catalog), schema, name_key(schema), comment, clock.now()),
    )


def _schemas(conn: sqlite3.Connection, catalog: str | None) -> list[SchemaInfo]:
    catalogs = {name_key(c.name): c.name for c in _all_catalogs(conn)}
    found: dict[tuple[str, str], SchemaInfo] = {}
    for row in conn.execute("SELECT catalog_key, name, comment, created_at FROM uc_schemas"):
        cat = catalogs.get(row["catalog_key"], row["catalog_key"])
        key = (row["catalog_key"], name_key(row["name"]))
        found[key] = SchemaInfo(
            cat, row["name"], row["comment"], clock.from_epoch(row["created_at"])
        )
    for row in conn.execute("SELECT DISTINCT catalog, schema_name FROM tables"):
        key = (name_key(row["catalog"]), name_key(row["schema_name"]))
        cat = catalogs.get(key[0], row["catalog"])
        found.setdefault(key, SchemaInfo(cat, row["schema_name"], None, None))
    wanted = None if catalog is None else name_key(catalog)
    return [found[k] for k in sorted(found) if wanted is None or k[0] == wanted]


def _all_catalogs(conn: sqlite3.Connection) -> list[CatalogInfo]:
    out = [
        CatalogInfo(r["name"], r["comment"], None)
        for r in conn.execute("SELECT * FROM uc_catalogs")
    ]
    known = {name_key(c.name) for c in out}
    for row in conn.execute("SELECT DISTINCT catalog FROM tables"):
        if name_key(row["catalog"]) not in known:
            known.add(name_key(row["catalog"]))
            out.append(CatalogInfo(row["catalog"], None, None))
    return out


def _tables_in(conn: sqlite3.Connection, catalog: str, schema: str | None) -> list[TableInfo]:
    if schema is None:
        rows = conn.execute("SELECT * FROM tables WHERE catalog = ? ORDER BY name", (catalog,))
    else:
        rows = conn.execute(
            "SELECT * FROM tables WHERE catalog = ? AND schema_name = ? ORDER BY name",
            (catalog, schema),
        )
    return [TableInfo.from_row(r) for r in rows]


def _refuse_shared_schemas(conn: sqlite3.Connection, catalog: str, schema: str | None) -> None:
    """Refuse dropping a schema (or a catalog's schemas) that a share holds with ADD SCHEMA."""
    for row in conn.execute(ENTRY_SELECT + " WHERE e.kind = 'schema'").fetchall():
        cat, _, sch = str(row["source"]).partition(".")
        if name_key(cat) == name_key(catalog) and (
            schema is None or name_key(sch) == name_key(schema)
        ):
            raise InvalidArgumentError(
                f"schema {row['source']} is shared in share {row['share_name']}; remove it first "
                f"(ALTER SHARE {row['share_name']} REMOVE SCHEMA {row['source']})"
            )


def _drop_tables(
    conn: sqlite3.Connection, tables: list[TableInfo], what: str
) -> list[DroppedTable]:
    """Unregister ``tables`` (refused, naming the shares, when a share names one of them)."""
    dropped: list[DroppedTable] = []
    for t in tables:
        users = conn.execute(
            ENTRY_SELECT + " WHERE e.kind = 'table' AND e.source = ?", (t.name,)
        ).fetchall()
        if users:
            where = ", ".join(f"share {u['share_name']} (as {u['alias']})" for u in users)
            first = users[0]
            raise InvalidArgumentError(
                f"cannot drop {what}: table {t.name} is shared in {where}; remove it first "
                f"(ALTER SHARE {first['share_name']} REMOVE TABLE {first['alias']})"
            )
        row = conn.execute("SELECT id, location FROM tables WHERE name = ?", (t.name,)).fetchone()
        managed = _managed(conn, row["id"], row["location"])
        conn.execute("DELETE FROM managed_tables WHERE table_id = ?", (row["id"],))
        conn.execute("DELETE FROM tables WHERE id = ?", (row["id"],))
        dropped.append(DroppedTable(t, managed))
    return dropped


def _managed(conn: sqlite3.Connection, table_id: str, location: str) -> bool:
    """Whether the lab owns the table's files: marked managed, and still at the location it created.

    (A managed name that ``CREATE OR REPLACE TABLE ... LOCATION`` re-pointed at other files is external.)
    """
    row = conn.execute(
        "SELECT location FROM managed_tables WHERE table_id = ?", (table_id,)
    ).fetchone()
    return row is not None and row["location"] == location
