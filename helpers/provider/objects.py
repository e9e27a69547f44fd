"""Catalogs and schemas on the provider, and what the statements on objects share (names, drops).

``CREATE CATALOG`` ... ``COMMENT ON`` run against the catalog's objects component
(:mod:`helpers.catalog.objects`). Dropping a schema or a catalog with ``CASCADE`` drops its tables: a
managed table's directory is moved aside inside the catalog transaction and deleted only after it
committed (moved back when it fails), so the drop is one step.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.catalog import TableInfo, validate_name
from helpers.catalog.objects import DroppedTable
from helpers.exceptions import InvalidArgumentError, SharelabError
from helpers.provider.frames import clean_error, rows_frame, status_frame, to_utc
from helpers.provider.writes import DataWrites
from helpers.sql.ddl import (
    CommentOnObject,
    CreateCatalog,
    CreateSchema,
    DescribeCatalog,
    DescribeSchema,
    DropCatalog,
    DropSchema,
    ShowCatalogs,
    ShowSchemas,
)

__all__ = ["OBJECT_HANDLERS", "CatalogObjects", "managed_root"]


def managed_root(home: Path) -> Path:
    """Where managed tables live: ``<lab home>/managed``."""
    return home / "managed"


def _like(pattern: str | None, name: str) -> bool:
    """Databricks' ``LIKE 'pattern'`` of SHOW: ``*`` any characters, ``|`` alternatives, case-insensitive."""
    if pattern is None:
        return True
    return any(fnmatch.fnmatchcase(name.lower(), alt.strip().lower()) for alt in pattern.split("|"))


class CatalogObjects(DataWrites):
    """Catalogs and schemas, table names completed with ``USE``, and drops that delete managed files."""

    # ------------------------------------------------------------------------------------------
    # Names
    # ------------------------------------------------------------------------------------------

    def full_table_name(self, name: str) -> str:
        """``catalog.schema.table`` for a 1-3 part name, completed with the ``USE`` defaults.

        :raises InvalidArgumentError: a default the name needs is not set.
        """
        parts = [p.strip("`") for p in str(name).split(".")]
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise InvalidArgumentError(f"{name!r} is not a table name; use catalog.schema.table")
        if len(parts) == 1 and self.current_schema is not None:
            parts = [self.current_schema, *parts]
        if len(parts) == 2 and self.current_catalog is not None:
            parts = [self.current_catalog, *parts]
        if len(parts) != 3:
            raise InvalidArgumentError(
                f"table name {name!r} needs a catalog and a schema: write catalog.schema.table, or run "
                "USE CATALOG c and USE SCHEMA s first"
            )
        for part, kind in zip(parts, ("catalog", "schema", "table"), strict=True):
            validate_name(part, kind, allow_dot=False)
        return ".".join(parts)

    def _schema_name(self, name: str) -> tuple[str, str]:
        parts = [p.strip("`") for p in str(name).split(".")]
        if len(parts) == 1:
            if self.current_catalog is None:
                raise InvalidArgumentError(
                    f"schema {name!r} needs its catalog: write catalog.{name} or run USE CATALOG c first"
                )
            parts = [self.current_catalog, parts[0]]
        if len(parts) != 2:
            raise InvalidArgumentError(f"{name!r} is not a schema name; use catalog.schema")
        return parts[0], parts[1]

    def _existing_table(self, name: str) -> TableInfo:
        """A registered table: the name as completed by the ``USE`` defaults, else a unique match."""
        try:
            full = self.full_table_name(name)
        except InvalidArgumentError:
            return self._resolve_name([p.strip("`") for p in str(name).split(".")])
        return self.catalog.get_table(full)

    # ------------------------------------------------------------------------------------------
    # Catalogs and schemas
    # ------------------------------------------------------------------------------------------

    def create_catalog(
        self, name: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> pd.DataFrame:
        """``CREATE CATALOG [IF NOT EXISTS] name [COMMENT '...']`` (with its ``default`` schema)."""
        if self.catalog.create_catalog(name, comment, if_not_exists=if_not_exists):
            return status_frame(f"catalog {name} created")
        return status_frame(f"catalog {name} already exists (IF NOT EXISTS): nothing changed")

    def create_schema(
        self, name: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> pd.DataFrame:
        """``CREATE SCHEMA [IF NOT EXISTS] [catalog.]schema [COMMENT '...']``."""
        catalog, schema = self._schema_name(name)
        if self.catalog.create_schema(catalog, schema, comment, if_not_exists=if_not_exists):
            return status_frame(f"schema {catalog}.{schema} created")
        return status_frame(
            f"schema {catalog}.{schema} already exists (IF NOT EXISTS): nothing changed"
        )

    def drop_catalog(
        self, name: str, *, if_exists: bool = False, cascade: bool = False
    ) -> pd.DataFrame:
        """``DROP CATALOG [IF EXISTS] name [CASCADE | RESTRICT]``."""
        dropped = self._dropping(
            lambda: self.catalog.drop_catalog(name, if_exists=if_exists, cascade=cascade)
        )
        if dropped is None:
            return status_frame(f"catalog {name} does not exist (IF EXISTS): nothing changed")
        if name.lower() == (self.current_catalog or "").lower():
            self.current_catalog = self.current_schema = None
        return status_frame(f"catalog {name} dropped{_dropped_text(dropped)}")

    def drop_schema(
        self, name: str, *, if_exists: bool = False, cascade: bool = False
    ) -> pd.DataFrame:
        """``DROP SCHEMA [IF EXISTS] [catalog.]schema [CASCADE | RESTRICT]``."""
        catalog, schema = self._schema_name(name)
        dropped = self._dropping(
            lambda: self.catalog.drop_schema(catalog, schema, if_exists=if_exists, cascade=cascade)
        )
        if dropped is None:
            return status_frame(
                f"schema {catalog}.{schema} does not exist (IF EXISTS): nothing changed"
            )
        return status_frame(f"schema {catalog}.{schema} dropped{_dropped_text(dropped)}")

    def show_catalogs(self, pattern: str | None = None) -> pd.DataFrame:
        """``SHOW CATALOGS [LIKE 'pattern']``: catalog, comment, created_at."""
        rows = [
            {"catalog": c.name, "comment": c.comment, "created_at": to_utc(c.created_at)}
            for c in self.catalog.list_catalogs()
            if _like(pattern, c.name)
        ]
        return rows_frame(rows, ["catalog", "comment", "created_at"])

    def show_schemas(self, catalog: str | None = None, pattern: str | None = None) -> pd.DataFrame:
        """``SHOW SCHEMAS [IN catalog] [LIKE 'pattern']``: databaseName, catalog, comment, created_at.

        Without ``IN``, the ``USE CATALOG`` default (else every catalog).
        """
        if catalog is not None:
            self.catalog.get_catalog(catalog)
        where = catalog if catalog is not None else self.current_catalog
        rows = [
            {
                "databaseName": s.name,
                "catalog": s.catalog,
                "comment": s.comment,
                "created_at": to_utc(s.created_at),
            }
            for s in self.catalog.list_schemas(where)
            if _like(pattern, s.name)
        ]
        return rows_frame(rows, ["databaseName", "catalog", "comment", "created_at"])

    def describe_catalog(self, name: str) -> pd.DataFrame:
        """``DESCRIBE CATALOG name``: info_name, info_value."""
        info = self.catalog.get_catalog(name)
        schemas = self.catalog.list_schemas(info.name)
        tables = self.catalog.list_tables(info.name)
        rows = [
            ("Catalog Name", info.name),
            ("Comment", info.comment),
            ("Catalog Type", "MANAGED_CATALOG" if info.created_at else "IMPLICIT (tables only)"),
            ("Created At", None if info.created_at is None else str(to_utc(info.created_at))),
            ("Schemas", str(len(schemas))),
            ("Tables", str(len(tables))),
        ]
        return pd.DataFrame(rows, columns=["info_name", "info_value"])

    def describe_schema(self, name: str) -> pd.DataFrame:
        """``DESCRIBE SCHEMA [catalog.]schema``: database_description_item, database_description_value."""
        catalog, schema = self._schema_name(name)
        info = self.catalog.get_schema(catalog, schema)
        tables = self.catalog.list_tables(info.catalog, info.name)
        rows = [
            ("Catalog Name", info.catalog),
            ("Namespace Name", info.name),
            ("Comment", info.comment),
            ("Created At", None if info.created_at is None else str(to_utc(info.created_at))),
            ("Tables", str(len(tables))),
        ]
        return pd.DataFrame(
            rows, columns=["database_description_item", "database_description_value"]
        )

    def comment_on(self, kind: str, name: str, comment: str | None) -> pd.DataFrame:
        """``COMMENT ON CATALOG|SCHEMA|TABLE name IS 'text' | NULL``."""
        if kind == "table":
            info = self._existing_table(name)
            dt = self._delta(info.location, info.name)
            try:
                dt.alter.set_table_description(comment or "")
            except Exception as exc:
                raise InvalidArgumentError(
                    f"cannot set the comment of {info.name}: {clean_error(exc)}"
                ) from exc
            return status_frame(f"comment of table {info.name} {'set' if comment else 'removed'}")
        if kind == "schema":
            full = ".".join(self._schema_name(name))
        else:
            full = name
        shown = self.catalog.set_object_comment(kind, full, comment)
        return status_frame(
            f"comment of {kind} {shown} {'set' if comment is not None else 'removed'}"
        )

    def _dropping(self, drop: Callable[[], list[DroppedTable] | None]) -> list[DroppedTable] | None:
        """Run a catalog drop and delete the managed tables' files, as one step (see the module doc)."""
        trash = managed_root(self.home.path) / ".dropped"
        moved: list[tuple[Path, Path]] = []
        try:
            with self.catalog.db.transaction():
                dropped = drop()
                for item in dropped or []:
                    if item.managed and Path(item.info.location).exists():
                        trash.mkdir(parents=True, exist_ok=True)
                        aside = trash / f"{uuid.uuid4().hex}"
                        try:
                            os.replace(item.info.location, aside)
                        except OSError as exc:
                            raise SharelabError(
                                f"cannot remove the files of {item.info.name} at {item.info.location}: "
                                f"{exc}; nothing was dropped (close what uses them and try again)"
                            ) from exc
                        moved.append((Path(item.info.location), aside))
        except BaseException:
            for original, aside in reversed(moved):
                try:
                    os.replace(aside, original)
                except OSError:  # pragma: no cover - the directory stays in .dropped
                    pass
            raise
        for _, aside in moved:
            shutil.rmtree(aside, ignore_errors=True)
        return dropped


def _dropped_text(dropped: Sequence[DroppedTable]) -> str:
    if not dropped:
        return ""
    managed = sum(1 for d in dropped if d.managed)
    return (
        f" with {len(dropped)} table{'s' * (len(dropped) != 1)} ({managed} managed, files deleted)"
    )


_Handler = Callable[[Any, Any], pd.DataFrame]

#: Statement class -> how a :class:`CatalogObjects` runs it (merged into the executor's table).
OBJECT_HANDLERS: dict[type, _Handler] = {
    CreateCatalog: lambda p, s: p.create_catalog(s.name, s.comment, if_not_exists=s.if_not_exists),
    CreateSchema: lambda p, s: p.create_schema(s.name, s.comment, if_not_exists=s.if_not_exists),
    DropCatalog: lambda p, s: p.drop_catalog(s.name, if_exists=s.if_exists, cascade=s.cascade),
    DropSchema: lambda p, s: p.drop_schema(s.name, if_exists=s.if_exists, cascade=s.cascade),
    ShowCatalogs: lambda p, s: p.show_catalogs(s.pattern),
    ShowSchemas: lambda p, s: p.show_schemas(s.catalog, s.pattern),
    DescribeCatalog: lambda p, s: p.describe_catalog(s.name),
    DescribeSchema: lambda p, s: p.describe_schema(s.name),
    CommentOnObject: lambda p, s: p.comment_on(s.kind, s.name, s.comment),
}
