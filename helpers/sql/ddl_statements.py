"""The statements of :mod:`helpers.sql.ddl` (catalogs, schemas, managed tables, maintenance) and column types."""

from __future__ import annotations

from dataclasses import dataclass

from helpers.sql.statements import DataStatement, Statement

#: Databricks type names (and aliases) → the Delta primitive type.
PRIMITIVE_TYPES = {
    "STRING": "string",
    "VARCHAR": "string",
    "CHAR": "string",
    "INT": "integer",
    "INTEGER": "integer",
    "BIGINT": "long",
    "LONG": "long",
    "SMALLINT": "short",
    "SHORT": "short",
    "TINYINT": "byte",
    "BYTE": "byte",
    "BOOLEAN": "boolean",
    "BOOL": "boolean",
    "DOUBLE": "double",
    "FLOAT": "float",
    "REAL": "float",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_LTZ": "timestamp",
    "TIMESTAMP_NTZ": "timestamp_ntz",
    "BINARY": "binary",
}


# ---------------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class DataType:
    """A column type.

    :param name: ``DECIMAL``, ``ARRAY``, ``MAP``, ``STRUCT`` or a key of :data:`PRIMITIVE_TYPES` (upper case).
    :param precision: ``DECIMAL(p, s)`` precision (10 when not given); None for other types.
    :param scale: ``DECIMAL(p, s)`` scale (0 when not given).
    :param children: element type of an ARRAY; key and value types of a MAP.
    :param fields: the fields of a STRUCT.
    """

    name: str
    precision: int | None = None
    scale: int | None = None
    children: tuple[DataType, ...] = ()
    fields: tuple[ColumnDef, ...] = ()

    @property
    def sql(self) -> str:
        """The type as Databricks writes it (``decimal(10,2)``, ``array<int>``, ``struct<a:int>``)."""
        if self.name == "DECIMAL":
            return f"decimal({self.precision},{self.scale})"
        if self.name == "ARRAY":
            return f"array<{self.children[0].sql}>"
        if self.name == "MAP":
            return f"map<{self.children[0].sql},{self.children[1].sql}>"
        if self.name == "STRUCT":
            return "struct<" + ",".join(f"{f.name}:{f.type.sql}" for f in self.fields) + ">"
        delta = PRIMITIVE_TYPES[self.name]
        return {"integer": "int", "long": "bigint", "short": "smallint", "byte": "tinyint"}.get(
            delta, delta
        )


@dataclass(frozen=True)
class ColumnDef:
    """One column of ``CREATE TABLE (...)`` / ``ADD COLUMNS (...)`` (or a STRUCT field)."""

    name: str
    type: DataType
    nullable: bool = True
    comment: str | None = None


# ---------------------------------------------------------------------------------------------- statements
@dataclass(frozen=True)
class CreateCatalog(Statement):
    name: str
    comment: str | None = None
    if_not_exists: bool = False


@dataclass(frozen=True)
class CreateSchema(Statement):
    """``CREATE SCHEMA [catalog.]schema``: ``name`` has one or two parts."""

    name: str
    comment: str | None = None
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropCatalog(Statement):
    name: str
    if_exists: bool = False
    cascade: bool = False


@dataclass(frozen=True)
class DropSchema(Statement):
    name: str
    if_exists: bool = False
    cascade: bool = False


@dataclass(frozen=True)
class ShowCatalogs(Statement):
    pattern: str | None = None


@dataclass(frozen=True)
class ShowSchemas(Statement):
    catalog: str | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class DescribeCatalog(Statement):
    name: str


@dataclass(frozen=True)
class DescribeSchema(Statement):
    name: str


@dataclass(frozen=True)
class CommentOnObject(Statement):
    """``COMMENT ON CATALOG|SCHEMA|TABLE name IS 'text' | NULL`` (``kind`` in lower case)."""

    kind: str
    name: str
    comment: str | None


@dataclass(frozen=True)
class CreateManagedTable(Statement):
    """``CREATE TABLE name (columns) ...`` or ``CREATE TABLE name ... AS query``: a table the lab stores."""

    name: str
    columns: tuple[ColumnDef, ...] = ()
    if_not_exists: bool = False
    replace: bool = False
    partitioned_by: tuple[str, ...] = ()
    comment: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    query: DataStatement | None = None


@dataclass(frozen=True)
class DropTable(Statement):
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class AlterTableAddColumns(Statement):
    name: str
    columns: tuple[ColumnDef, ...]


@dataclass(frozen=True)
class AlterTableRename(Statement):
    name: str
    new_name: str


@dataclass(frozen=True)
class AlterColumnComment(Statement):
    name: str
    column: str
    comment: str | None


@dataclass(frozen=True)
class TruncateTable(Statement):
    name: str


@dataclass(frozen=True)
class Optimize(Statement):
    name: str
    where: str | None = None
    zorder_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vacuum(Statement):
    name: str
    retain_hours: float | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class RestoreTable(Statement):
    """``RESTORE TABLE t TO VERSION AS OF n`` (``version``) or ``TIMESTAMP AS OF 'ts'`` (``timestamp``)."""

    name: str
    version: int | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class SetConfig(Statement):
    """``SET key = value``: a session setting (``spark.databricks.delta.retentionDurationCheck.enabled``)."""

    key: str
    value: str
