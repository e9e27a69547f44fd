"""Managed tables on the provider: ``CREATE TABLE``, ``DROP TABLE``, ``ALTER TABLE`` of :mod:`helpers.sql.ddl`.

Catalogs and schemas are :mod:`helpers.provider.objects`; table maintenance :mod:`helpers.provider.maintenance`.

A *managed* table is created by the lab (``CREATE TABLE name (columns)`` or ``CREATE TABLE name AS SELECT``)
as a Delta table under ``<lab home>/managed/<catalog>/<schema>/<table>-<id>``; ``DROP TABLE`` removes its
files. A table registered with ``CREATE TABLE ... LOCATION`` is external: ``DROP TABLE`` only forgets it.
Table and column comments are stored in the Delta log (the table's ``description`` and each field's
``comment`` metadata, as Databricks does), so recipients see them too.

Every statement is one step: files are written to a fresh directory and registered in one catalog
transaction (the directory is removed when that fails), and dropped tables' directories are moved aside
inside the catalog transaction and deleted only after it committed (moved back when it fails).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers.catalog import TableInfo
from helpers.catalog.objects import DroppedTable
from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
)
from helpers.provider.frames import clean_error, status_frame
from helpers.provider.lineage import record_query_lineage
from helpers.provider.objects import OBJECT_HANDLERS, CatalogObjects, managed_root
from helpers.sql.ddl import PRIMITIVE_TYPES as _PRIMITIVES
from helpers.sql.ddl import (
    AlterColumnComment,
    AlterTableAddColumns,
    AlterTableRename,
    ColumnDef,
    CreateManagedTable,
    DataType,
    DropTable,
    parse_column_list,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import Field
    from deltalake.schema import ArrayType, MapType, PrimitiveType, StructType

    from helpers.sql.statements import DataStatement

__all__ = ["DDL_HANDLERS", "ObjectStatements", "delta_field", "managed_root"]

#: What :meth:`ObjectStatements.create_table` takes as columns: text, parsed columns, or (name, type) pairs.
ColumnsArg = str | Sequence[ColumnDef] | Sequence[tuple[str, str]]


def delta_type(dtype: DataType) -> PrimitiveType | ArrayType | MapType | StructType:
    """A parsed Databricks type as a deltalake type."""
    from deltalake.schema import ArrayType, MapType, PrimitiveType, StructType

    if dtype.name == "DECIMAL":
        return PrimitiveType(f"decimal({dtype.precision},{dtype.scale})")
    if dtype.name == "ARRAY":
        return ArrayType(delta_type(dtype.children[0]), contains_null=True)
    if dtype.name == "MAP":
        key, value = dtype.children
        return MapType(delta_type(key), delta_type(value), value_contains_null=True)
    if dtype.name == "STRUCT":
        return StructType([delta_field(f) for f in dtype.fields])
    return PrimitiveType(_PRIMITIVES[dtype.name])


def delta_field(column: ColumnDef) -> Field:
    """A parsed column as a deltalake field (its comment in the field metadata, as Databricks stores it)."""
    from deltalake import Field

    metadata = {"comment": column.comment} if column.comment is not None else {}
    return Field(column.name, delta_type(column.type), nullable=column.nullable, metadata=metadata)


def _coerce_columns(columns: ColumnsArg) -> tuple[ColumnDef, ...]:
    if isinstance(columns, str):
        return parse_column_list(columns)
    out: list[ColumnDef] = []
    for col in columns:
        if isinstance(col, ColumnDef):
            out.append(col)
        else:
            name, type_text = col
            out.extend(parse_column_list(f"{name} {type_text}"))
    return tuple(out)


class ObjectStatements(CatalogObjects):
    """``CREATE CATALOG`` ... ``ALTER TABLE ... RENAME TO`` on the provider."""

    # ------------------------------------------------------------------------------------------
    # Managed tables
    # ------------------------------------------------------------------------------------------

    def create_table(
        self,
        name: str,
        columns: ColumnsArg = (),
        *,
        query: str | DataStatement | None = None,
        replace: bool = False,
        if_not_exists: bool = False,
        partitioned_by: Sequence[str] = (),
        comment: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> pd.DataFrame:
        """``CREATE [OR REPLACE] TABLE [IF NOT EXISTS] name (columns) ...`` or ``... AS query``: a managed table.

        :param columns: ``"id INT NOT NULL, name STRING COMMENT 'x'"``, parsed columns or (name, type) pairs.
        :param query: the ``AS`` query (text or parsed); then no ``columns``.
        :raises NotFoundError: the schema does not exist. :raises AlreadyExistsError: the name is taken.
        """
        full = self.full_table_name(name)
        cat, sch, _ = full.split(".")
        cols = _coerce_columns(columns)
        if bool(cols) == (query is not None):
            raise InvalidArgumentError("give either the columns or an AS query to CREATE TABLE")
        self.catalog.get_schema(cat, sch)  # NotFoundError names CREATE SCHEMA
        existing = self._registered(full)
        if existing is not None and not replace:
            if if_not_exists:
                return status_frame(
                    f"table {existing.name} already exists (IF NOT EXISTS): nothing changed"
                )
            raise AlreadyExistsError(
                f"table {existing.name} already exists; use CREATE OR REPLACE TABLE, DROP TABLE first, "
                "or CREATE TABLE IF NOT EXISTS"
            )
        props = {
            str(k): (str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (properties or {}).items()
        }
        data, lineage = self._ctas_data(query) if query is not None else (None, None)
        parts = list(partitioned_by)
        self._check_partitions(
            parts,
            [c.name for c in cols] if cols else (data.column_names if data is not None else []),
        )
        if existing is not None and self.catalog.is_managed(existing.name):
            self._replace_managed(existing, cols, data, parts, comment, props)
            if lineage is not None:  # CTAS: the catalog records what the table is built from
                record_query_lineage(self.catalog, existing.name, *lineage)
            return status_frame(
                f"table {existing.name} replaced (version {self._delta(existing.location, existing.name).version()})"
            )
        location = self._new_location(full)
        try:
            self._write_new(location, cols, data, parts, comment, props, full)
            with self.catalog.db.transaction():
                info = self.catalog.register_table(full, location, replace=existing is not None)
                self.catalog.mark_managed(info.name)
        except BaseException:
            shutil.rmtree(location, ignore_errors=True)
            raise
        if lineage is not None:
            record_query_lineage(self.catalog, info.name, *lineage)
        rows = "" if data is None else f" with {data.num_rows} row{'s' * (data.num_rows != 1)}"
        return status_frame(f"table {info.name} created{rows}")

    def drop_table(self, name: str, *, if_exists: bool = False) -> pd.DataFrame:
        """``DROP TABLE [IF EXISTS] name``: a managed table's files go; an external table is only forgotten.

        :raises InvalidArgumentError: a share names the table (remove it from the share first).
        """
        try:
            info = self._existing_table(name)
        except NotFoundError:
            if if_exists:
                return status_frame(f"table {name} does not exist (IF EXISTS): nothing changed")
            raise
        dropped = self._dropping(lambda: self._drop_one(info.name))
        assert dropped is not None
        kind = (
            "its files deleted"
            if dropped[0].managed
            else f"external: files at {info.location} kept"
        )
        return status_frame(f"table {info.name} dropped ({kind})")

    def _drop_one(self, name: str) -> list[DroppedTable]:
        result = self.catalog.drop_table(name)
        return [] if result is None else [result]

    def add_columns(self, name: str, columns: ColumnsArg) -> pd.DataFrame:
        """``ALTER TABLE name ADD COLUMNS (col TYPE [COMMENT '...'], ...)`` as one Delta commit."""
        info = self._existing_table(name)
        cols = _coerce_columns(columns)
        dt = self._delta(info.location, info.name)
        have = {f.name.lower() for f in dt.schema().fields}
        for col in cols:
            if col.name.lower() in have:
                raise InvalidArgumentError(f"column {col.name} already exists in {info.name}")
            if not col.nullable:
                raise InvalidArgumentError(
                    f"column {col.name} cannot be added as NOT NULL: the existing rows have no value for it"
                )
        try:
            dt.alter.add_columns([delta_field(c) for c in cols])
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot add columns to {info.name}: {clean_error(exc)}"
            ) from exc
        names = ", ".join(c.name for c in cols)
        return status_frame(f"table {info.name}: added {names}")

    def rename_table(self, name: str, new_name: str) -> pd.DataFrame:
        """``ALTER TABLE name RENAME TO new_name`` (within its catalog; share entries follow the table)."""
        info = self._existing_table(name)
        parts = [p.strip("`") for p in str(new_name).split(".")]
        if len(parts) == 1:
            parts = [info.catalog, info.schema, parts[0]]
        elif len(parts) == 2:
            parts = [info.catalog, *parts]
        target = ".".join(parts)
        renamed = self.catalog.rename_table(info.name, target)
        return status_frame(f"table {info.name} renamed to {renamed.name}")

    def set_column_comment(self, name: str, column: str, comment: str | None) -> pd.DataFrame:
        """``ALTER TABLE name ALTER COLUMN column COMMENT 'text'`` as one Delta commit."""
        info = self._existing_table(name)
        dt = self._delta(info.location, info.name)
        actual = self._column(self._columns(dt), column, info.name)
        field = next(f for f in dt.schema().fields if f.name == actual)
        metadata = {str(k): str(v) for k, v in dict(field.metadata).items() if k != "comment"}
        if comment is not None:
            metadata["comment"] = comment
        try:
            dt.alter.set_column_metadata(actual, metadata)
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot change column {actual} of {info.name}: {clean_error(exc)}"
            ) from exc
        return status_frame(
            f"comment of column {actual} of {info.name} {'set' if comment else 'removed'}"
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _registered(self, full: str) -> TableInfo | None:
        try:
            return self.catalog.get_table(full)
        except NotFoundError:
            return None

    def _ctas_data(self, query: str | DataStatement) -> tuple[pa.Table, tuple[list[str], str]]:
        """The rows of a CTAS query, and (the tables it read, its SQL) for the lineage."""
        from helpers.sql import DataStatement, parse_one

        statement = parse_one(query) if isinstance(query, str) else query
        if not isinstance(statement, DataStatement) or statement.kind != "query":
            raise InvalidArgumentError("CREATE TABLE ... AS needs a query (SELECT / WITH / VALUES)")
        arrow, names = self._run_query_arrow(statement.expression)
        return arrow, (list(names.values()), statement.text)

    @staticmethod
    def _check_partitions(partitions: Sequence[str], columns: Sequence[str]) -> None:
        lookup = {c.lower() for c in columns}
        for p in partitions:
            if p.lower() not in lookup:
                raise InvalidArgumentError(
                    f"partition column {p} is not a column of the table ({', '.join(columns)})"
                )

    def _new_location(self, full: str) -> Path:
        cat, sch, tbl = full.split(".")
        root = managed_root(self.home.path) / cat / sch
        root.mkdir(parents=True, exist_ok=True)
        return root / f"{tbl}-{uuid.uuid4().hex[:12]}"

    @staticmethod
    def _write_new(
        location: Path,
        cols: Sequence[ColumnDef],
        data: pa.Table | None,
        partitions: list[str],
        comment: str | None,
        props: dict[str, str],
        label: str,
    ) -> None:
        from deltalake import DeltaTable, Schema, write_deltalake

        try:
            if data is None:
                DeltaTable.create(
                    str(location),
                    Schema([delta_field(c) for c in cols]),
                    mode="error",
                    partition_by=partitions or None,
                    description=comment,
                    configuration=props or None,
                )
            else:
                write_deltalake(
                    str(location),
                    data,
                    mode="error",
                    partition_by=partitions or None,
                    description=comment,
                    configuration=props or None,
                )
        except Exception as exc:
            raise InvalidArgumentError(f"cannot create {label}: {clean_error(exc)}") from exc

    def _replace_managed(
        self,
        info: TableInfo,
        cols: Sequence[ColumnDef],
        data: pa.Table | None,
        partitions: list[str],
        comment: str | None,
        props: dict[str, str],
    ) -> None:
        """``CREATE OR REPLACE`` of a managed table: one commit on its log (its history stays)."""
        from deltalake import DeltaTable, Schema, write_deltalake

        try:
            if data is None:
                DeltaTable.create(
                    info.location,
                    Schema([delta_field(c) for c in cols]),
                    mode="overwrite",
                    partition_by=partitions or None,
                    description=comment,
                    configuration=props or None,
                )
            else:
                write_deltalake(
                    info.location,
                    data,
                    mode="overwrite",
                    schema_mode="overwrite",
                    partition_by=partitions or None,
                    description=comment,
                    configuration=props or None,
                )
        except Exception as exc:
            raise InvalidArgumentError(f"cannot replace {info.name}: {clean_error(exc)}") from exc


_Handler = Callable[[Any, Any], pd.DataFrame]

#: Statement class -> how an :class:`ObjectStatements` runs it (merged into the executor's table).
DDL_HANDLERS: dict[type, _Handler] = {
    **OBJECT_HANDLERS,
    CreateManagedTable: lambda p, s: p.create_table(
        s.name,
        s.columns,
        query=s.query,
        replace=s.replace,
        if_not_exists=s.if_not_exists,
        partitioned_by=s.partitioned_by,
        comment=s.comment,
        properties=dict(s.properties),
    ),
    DropTable: lambda p, s: p.drop_table(s.name, if_exists=s.if_exists),
    AlterTableAddColumns: lambda p, s: p.add_columns(s.name, s.columns),
    AlterTableRename: lambda p, s: p.rename_table(s.name, s.new_name),
    AlterColumnComment: lambda p, s: p.set_column_comment(s.name, s.column, s.comment),
}
