"""Object DDL and table maintenance of the provider SQL: catalogs, schemas, managed tables, OPTIMIZE...

The statements (frozen dataclasses) and their recursive-descent parsers; :mod:`helpers.sql.parser` calls
the ``parse_*`` functions from its ``CREATE`` / ``DROP`` / ``ALTER`` / ``SHOW`` / ``DESCRIBE`` / ``COMMENT``
handlers and for the statements that start with ``TRUNCATE``, ``OPTIMIZE``, ``VACUUM``, ``RESTORE`` and
``SET``. Grammar::

    CREATE CATALOG [IF NOT EXISTS] catalog [COMMENT 'text']
    CREATE <SCHEMA | DATABASE> [IF NOT EXISTS] [catalog.]schema [COMMENT 'text']
    DROP <CATALOG | SCHEMA | DATABASE> [IF EXISTS] name [CASCADE | RESTRICT]
    SHOW CATALOGS [[LIKE] 'pattern'] | SHOW <SCHEMAS | DATABASES> [<IN | FROM> catalog] [[LIKE] 'pattern']
    DESCRIBE <CATALOG | SCHEMA | DATABASE> [EXTENDED] name
    COMMENT ON <CATALOG | SCHEMA | DATABASE | TABLE> name IS <'text' | NULL>
    CREATE [OR REPLACE] TABLE [IF NOT EXISTS] table [(column TYPE [NOT NULL] [COMMENT 'text'], ...)]
        {USING DELTA | PARTITIONED BY (column, ...) | COMMENT 'text' | TBLPROPERTIES (key = value, ...)}
        [AS query]
    DROP TABLE [IF EXISTS] table
    ALTER TABLE table ADD COLUMN[S] (column TYPE [COMMENT 'text'], ...)
    ALTER TABLE table RENAME TO new_name
    ALTER TABLE table <ALTER | CHANGE> [COLUMN] column COMMENT 'text'
    TRUNCATE TABLE table
    OPTIMIZE table [WHERE predicate] [ZORDER BY (column, ...)]
    VACUUM table [RETAIN n HOURS] [DRY RUN]
    RESTORE [TABLE] table TO <VERSION | TIMESTAMP> AS OF <n | 'timestamp'>
    SET key = value

Types are Databricks' names: STRING, INT, BIGINT, SMALLINT, TINYINT, BOOLEAN, DOUBLE, FLOAT, DECIMAL(p,s),
DATE, TIMESTAMP, TIMESTAMP_NTZ, BINARY, ARRAY<type>, MAP<key, value>, STRUCT<name: type, ...> (and their
aliases INTEGER, LONG, SHORT, BYTE, REAL, DEC, NUMERIC, VARCHAR(n), CHAR(n)).
"""

from __future__ import annotations

from collections.abc import Callable

from helpers.exceptions import SqlParseError
from helpers.sql.cursor import TokenCursor, alternatives
from helpers.sql.ddl_statements import (
    PRIMITIVE_TYPES,
    AlterColumnComment,
    AlterTableAddColumns,
    AlterTableRename,
    ColumnDef,
    CommentOnObject,
    CreateCatalog,
    CreateManagedTable,
    CreateSchema,
    DataType,
    DescribeCatalog,
    DescribeSchema,
    DropCatalog,
    DropSchema,
    DropTable,
    Optimize,
    RestoreTable,
    SetConfig,
    ShowCatalogs,
    ShowSchemas,
    TruncateTable,
    Vacuum,
)
from helpers.sql.lexer import (
    EOF,
    IDENT,
    NUMBER,
    QUOTED,
    STRING,
    Lines,
    syntax_error,
    tokenize,
)
from helpers.sql.statements import CreateTable, DataStatement, Statement

__all__ = [
    "PRIMITIVE_TYPES",
    "AlterColumnComment",
    "AlterTableAddColumns",
    "AlterTableRename",
    "ColumnDef",
    "CommentOnObject",
    "CreateCatalog",
    "CreateManagedTable",
    "CreateSchema",
    "DataType",
    "DescribeCatalog",
    "DescribeSchema",
    "DropCatalog",
    "DropSchema",
    "DropTable",
    "Optimize",
    "RestoreTable",
    "SetConfig",
    "ShowCatalogs",
    "ShowSchemas",
    "TruncateTable",
    "Vacuum",
    "parse_column_list",
    "parse_data_type",
]

_DECIMALS = ("DECIMAL", "DEC", "NUMERIC")
_COMPLEX = ("ARRAY", "MAP", "STRUCT")
_TYPE_HINT = (
    "a type (STRING, INT, BIGINT, SMALLINT, TINYINT, BOOLEAN, DOUBLE, FLOAT, DECIMAL(p,s), DATE, "
    "TIMESTAMP, TIMESTAMP_NTZ, BINARY, ARRAY<...>, MAP<...>, STRUCT<...>)"
)


# ---------------------------------------------------------------------------------------------- parsing
def _table_name(p: TokenCursor) -> str:
    return ".".join(p.name("a table name", (1, 2, 3)))


def _comment_value(p: TokenCursor) -> str | None:
    if p.accept_kw("NULL"):
        return None
    return p.string("the comment string or NULL")


def parse_create_object(p: TokenCursor, what: str, if_not_exists: bool) -> Statement:
    """After ``CREATE CATALOG|SCHEMA|DATABASE [IF NOT EXISTS]``."""
    if what == "CATALOG":
        name = p.name("a catalog name")[0]
    else:
        name = ".".join(p.name("a schema name or catalog.schema", (1, 2)))
    comment: str | None = None
    while not p.peek().kind == EOF:
        tok = p.peek()
        if tok.is_kw("COMMENT") and comment is None:
            p.advance()
            comment = p.string("the comment string")
        elif tok.is_kw("MANAGED", "LOCATION", "WITH", "USING", "DEFAULT"):
            raise p.error(
                "COMMENT or end of statement (the lab stores catalogs and schemas itself: leave out "
                "LOCATION, MANAGED LOCATION, USING SHARE and properties)"
            )
        else:
            raise p.error("COMMENT or end of statement" if comment is None else "end of statement")
    if what == "CATALOG":
        return CreateCatalog(name, comment, if_not_exists)
    return CreateSchema(name, comment, if_not_exists)


def parse_drop_object(p: TokenCursor, what: str) -> Statement:
    """After ``DROP CATALOG|SCHEMA|DATABASE|TABLE``."""
    if_exists = p.accept_kw("IF", "EXISTS")
    if what == "TABLE":
        return DropTable(_table_name(p), if_exists)
    if what == "CATALOG":
        name = p.name("a catalog name")[0]
    else:
        name = ".".join(p.name("a schema name or catalog.schema", (1, 2)))
    cascade = False
    if p.at_kw("CASCADE", "RESTRICT"):
        cascade = p.advance().value.upper() == "CASCADE"
    p.expect_end("CASCADE, RESTRICT or end of statement")
    if what == "CATALOG":
        return DropCatalog(name, if_exists, cascade)
    return DropSchema(name, if_exists, cascade)


def _pattern(p: TokenCursor) -> str | None:
    p.accept_kw("LIKE")
    if p.peek().kind == STRING:
        return p.advance().value
    return None


def parse_show_objects(p: TokenCursor, what: str) -> Statement:
    """After ``SHOW CATALOGS`` / ``SHOW SCHEMAS|DATABASES``."""
    if what == "CATALOGS":
        pattern = _pattern(p)
        p.expect_end("LIKE 'pattern' or end of statement")
        return ShowCatalogs(pattern)
    catalog = None
    if p.at_kw("IN", "FROM"):
        p.advance()
        catalog = p.name("a catalog name")[0]
    pattern = _pattern(p)
    p.expect_end("IN catalog, LIKE 'pattern' or end of statement")
    return ShowSchemas(catalog, pattern)


def parse_describe_object(p: TokenCursor, what: str) -> Statement:
    """After ``DESCRIBE CATALOG|SCHEMA|DATABASE``."""
    p.accept_kw("EXTENDED")
    if what == "CATALOG":
        return DescribeCatalog(p.name("a catalog name")[0])
    return DescribeSchema(".".join(p.name("a schema name or catalog.schema", (1, 2))))


def parse_comment_on_object(p: TokenCursor, what: str) -> Statement:
    """After ``COMMENT ON CATALOG|SCHEMA|DATABASE|TABLE``."""
    if what == "CATALOG":
        name = p.name("a catalog name")[0]
    elif what == "TABLE":
        name = _table_name(p)
    else:
        name = ".".join(p.name("a schema name or catalog.schema", (1, 2)))
    p.expect_kw("IS")
    kind = "schema" if what == "DATABASE" else what.lower()
    return CommentOnObject(kind, name, _comment_value(p))


def parse_data_type(p: TokenCursor) -> DataType:
    """A Databricks type at the cursor."""
    tok = p.peek()
    if tok.kind != IDENT:
        raise p.error(_TYPE_HINT)
    word = tok.value.upper()
    if word in _DECIMALS:
        p.advance()
        precision, scale = 10, 0
        if p.accept_symbol("("):
            precision = p.integer("the decimal precision (1 to 38)")
            if p.accept_symbol(","):
                scale = p.integer("the decimal scale")
            p.expect_symbol(")", "')' after the decimal precision and scale")
        if not 1 <= precision <= 38 or scale > precision:
            raise syntax_error(
                p.lines,
                tok.pos,
                "DECIMAL(p, s) with 1 <= p <= 38 and 0 <= s <= p",
                f"DECIMAL({precision},{scale})",
            )
        return DataType("DECIMAL", precision, scale)
    if word in _COMPLEX:
        p.advance()
        p.expect_symbol("<", f"'<' after {word}")
        if word == "ARRAY":
            result = DataType("ARRAY", children=(parse_data_type(p),))
        elif word == "MAP":
            key = parse_data_type(p)
            p.expect_symbol(",", "',' between the MAP key and value types")
            result = DataType("MAP", children=(key, parse_data_type(p)))
        else:
            fields = [_struct_field(p)]
            while p.accept_symbol(","):
                fields.append(_struct_field(p))
            result = DataType("STRUCT", fields=tuple(fields))
        p.expect_symbol(">", f"'>' to close {word}<...>")
        return result
    if word in PRIMITIVE_TYPES:
        p.advance()
        if word in ("VARCHAR", "CHAR") and p.accept_symbol("("):
            p.integer("a length")
            p.expect_symbol(")")
        return DataType(word)
    raise p.error(_TYPE_HINT)


def _struct_field(p: TokenCursor) -> ColumnDef:
    name = p.name_part("a STRUCT field name")
    p.accept_symbol(":")
    dtype = parse_data_type(p)
    nullable = not p.accept_kw("NOT", "NULL")
    comment = p.string("the comment string") if p.accept_kw("COMMENT") else None
    return ColumnDef(name, dtype, nullable, comment)


def _column(p: TokenCursor) -> ColumnDef:
    name = p.name_part("a column name")
    dtype = parse_data_type(p)
    nullable, comment = True, None
    while p.at_kw("NOT", "NULL", "COMMENT", "DEFAULT", "GENERATED", "PRIMARY", "CONSTRAINT"):
        tok = p.peek()
        if tok.is_kw("NOT"):
            p.expect_kw("NOT", "NULL")
            nullable = False
        elif tok.is_kw("NULL"):
            p.advance()
        elif tok.is_kw("COMMENT"):
            p.advance()
            comment = p.string("the column comment string")
        else:
            raise p.error(
                "NOT NULL, COMMENT, ',' or ')' (defaults, generated columns and constraints are not supported)"
            )
    return ColumnDef(name, dtype, nullable, comment)


def _columns(p: TokenCursor) -> tuple[ColumnDef, ...]:
    """``(col TYPE ..., ...)`` with each name once."""
    p.expect_symbol("(", "'(' to start the column list")
    cols: list[ColumnDef] = []
    seen: set[str] = set()
    while True:
        tok = p.peek()
        col = _column(p)
        if col.name.lower() in seen:
            raise syntax_error(p.lines, tok.pos, "each column name once", f"'{col.name}' again")
        seen.add(col.name.lower())
        cols.append(col)
        if p.accept_symbol(")"):
            return tuple(cols)
        p.expect_symbol(",", "',' or ')' in the column list")


def parse_column_list(text: str) -> tuple[ColumnDef, ...]:
    """Parse ``"id INT NOT NULL, name STRING COMMENT 'x'"`` (parentheses optional), as the Python API takes it.

    :raises SqlParseError: naming the position and what was expected.
    """
    if not isinstance(text, str) or not text.strip():
        raise SqlParseError("give the columns as text such as 'id INT, name STRING'")
    text = text.strip()
    if not text.startswith("("):
        text = f"({text})"
    p = TokenCursor(text, tokenize(text), Lines(text))
    cols = _columns(p)
    p.expect_end("end of the column list")
    return cols


def _table_clauses(p: TokenCursor) -> dict[str, object]:
    """``{USING DELTA | PARTITIONED BY (...) | COMMENT '...' | TBLPROPERTIES (...) | LOCATION '...'}``."""
    clauses: dict[str, object] = {}
    while p.at_kw(
        "USING", "PARTITIONED", "COMMENT", "TBLPROPERTIES", "LOCATION", "CLUSTER", "OPTIONS"
    ):
        tok = p.advance()
        clause = tok.value.upper()
        if clause in clauses:
            raise syntax_error(p.lines, tok.pos, f"{clause} at most once", f"'{tok.value}' again")
        if clause == "USING":
            fmt = p.peek()
            if not fmt.is_kw("DELTA"):
                raise p.error("DELTA (the lab's tables are Delta tables)")
            p.advance()
            clauses[clause] = True
        elif clause == "PARTITIONED":
            p.expect_kw("BY")
            clauses[clause] = _name_list(p, "a partition column name")
        elif clause == "COMMENT":
            clauses[clause] = p.string("the table comment string")
        elif clause == "TBLPROPERTIES":
            clauses[clause] = p.properties("a table property name")
        elif clause == "LOCATION":
            clauses[clause] = p.string("the table location string")
        else:
            raise syntax_error(
                p.lines,
                tok.pos,
                "USING DELTA, PARTITIONED BY, COMMENT, TBLPROPERTIES or AS",
                f"'{tok.value}'",
            )
    return clauses


def parse_create_table(
    p: TokenCursor,
    if_not_exists: bool,
    replace: bool,
    query: Callable[[int], DataStatement],
) -> Statement:
    """After ``CREATE [OR REPLACE] TABLE [IF NOT EXISTS]``: a managed table, a CTAS or a registration.

    :param query: parses the rest of the statement from token index ``i`` as a query (the ``AS`` part).
    """
    name_tok = p.peek()
    parts = p.name("a table name such as catalog.schema.table", (1, 2, 3))
    columns = _columns(p) if p.at_symbol("(") else ()
    clauses = _table_clauses(p)
    statement: DataStatement | None = None
    if p.at_kw("AS"):
        p.advance()
        if columns:
            raise p.error("no column list with AS SELECT (the query gives the columns)", name_tok)
        statement = query(p.i)
    location = clauses.get("LOCATION")
    if isinstance(location, str):
        if columns or statement is not None or set(clauses) - {"LOCATION", "USING"}:
            raise syntax_error(
                p.lines,
                name_tok.pos,
                "CREATE TABLE name LOCATION '/path' alone (it registers an existing Delta table with its "
                "own columns); leave out LOCATION to create a table the lab stores",
                "more clauses",
            )
        if len(parts) != 3:
            raise syntax_error(
                p.lines,
                name_tok.pos,
                "a three-part table name catalog.schema.table",
                f"'{'.'.join(parts)}'",
            )
        p.expect_end("end of statement")
        return CreateTable(".".join(parts), location, if_not_exists, replace)
    if not columns and statement is None:
        options = ["'(' and the columns", "AS SELECT ...", "LOCATION '/path'"]
        raise p.error(alternatives(options))
    p.expect_end("end of statement")
    partitioned = clauses.get("PARTITIONED", ())
    props = clauses.get("TBLPROPERTIES", ())
    comment = clauses.get("COMMENT")
    return CreateManagedTable(
        ".".join(parts),
        columns,
        if_not_exists,
        replace,
        partitioned_by=tuple(partitioned) if isinstance(partitioned, tuple) else (),
        comment=comment if isinstance(comment, str) else None,
        properties=tuple(props) if isinstance(props, tuple) else (),
        query=statement,
    )


def _name_list(p: TokenCursor, what: str) -> tuple[str, ...]:
    p.expect_symbol("(", "'(' and the column names")
    names = [p.name_part(what)]
    while p.accept_symbol(","):
        names.append(p.name_part(what))
    p.expect_symbol(")", "',' or ')'")
    return tuple(names)


def parse_alter_table(p: TokenCursor, name: str) -> Statement:
    """After ``ALTER TABLE name`` when the next word is not ``SET``."""
    action = p.expect_one_of("ADD", "RENAME", "ALTER", "CHANGE", "SET TBLPROPERTIES")
    if action == "ADD":
        p.expect_one_of("COLUMNS", "COLUMN")
        if p.at_symbol("("):
            cols = _columns(p)
        else:
            cols = (_column(p),)
        return AlterTableAddColumns(name, cols)
    if action == "RENAME":
        if p.at_kw("COLUMN"):
            raise p.error(
                "TO new_name (renaming a column needs column mapping, which the lab does not enable)"
            )
        p.expect_kw("TO")
        return AlterTableRename(name, _table_name(p))
    p.accept_kw("COLUMN")
    column = p.name_part("a column name")
    if not p.at_kw("COMMENT"):
        raise p.error("COMMENT 'text' (the lab changes column comments only)")
    p.advance()
    return AlterColumnComment(name, column, _comment_value(p))


def parse_truncate(p: TokenCursor) -> Statement:
    """After ``TRUNCATE``."""
    p.expect_kw("TABLE")
    name = _table_name(p)
    if p.at_kw("PARTITION"):
        raise p.error(
            "end of statement (TRUNCATE ... PARTITION is for non-Delta tables; use DELETE FROM ... WHERE)"
        )
    return TruncateTable(name)


def parse_optimize(p: TokenCursor) -> Statement:
    """After ``OPTIMIZE``."""
    name = _table_name(p)
    where: str | None = None
    if p.accept_kw("WHERE"):
        first = p.i
        while p.peek().kind != EOF and not p.at_kw("ZORDER"):
            p.advance()
        if p.i == first:
            raise p.error("a predicate on partition columns after WHERE")
        where = p.text[p.tokens[first].pos : p.tokens[p.i - 1].end]
    zorder: tuple[str, ...] = ()
    if p.accept_kw("ZORDER"):
        p.expect_kw("BY")
        zorder = _name_list(p, "a column name")
    return Optimize(name, where, zorder)


def parse_vacuum(p: TokenCursor) -> Statement:
    """After ``VACUUM``."""
    name = _table_name(p)
    hours: float | None = None
    if p.accept_kw("RETAIN"):
        tok = p.peek()
        if tok.kind != NUMBER:
            raise p.error("a number of hours")
        p.advance()
        try:
            hours = float(tok.value)
        except ValueError:
            raise syntax_error(p.lines, tok.pos, "a number of hours", f"'{tok.value}'") from None
        p.expect_one_of("HOURS", "HOUR")
    dry_run = p.accept_kw("DRY", "RUN")
    p.expect_end("RETAIN n HOURS, DRY RUN or end of statement")
    return Vacuum(name, hours, dry_run)


def parse_restore(p: TokenCursor) -> Statement:
    """After ``RESTORE``."""
    p.accept_kw("TABLE")
    name = _table_name(p)
    p.expect_kw("TO")
    kind = p.expect_one_of("VERSION", "TIMESTAMP")
    p.expect_kw("AS", "OF")
    if kind == "VERSION":
        return RestoreTable(name, version=p.integer("a version number"))
    return RestoreTable(
        name, timestamp=p.string("a timestamp string such as '2024-01-31 12:00:00'")
    )


def parse_set(p: TokenCursor) -> Statement:
    """After ``SET``: ``key = value`` (a dotted key, a literal value)."""
    tok = p.peek()
    if tok.kind not in (IDENT, QUOTED):
        raise p.error(
            "a setting name such as spark.databricks.delta.retentionDurationCheck.enabled"
        )
    key = ".".join(p.name("a setting name", tuple(range(1, 12))))
    p.expect_symbol("=", f"'=' after {key}")
    value = p.literal("a value (true, false, a number or a string)")
    if value is None:
        raise p.error("a value other than NULL", p.tokens[p.i - 1])
    p.expect_end("end of statement")
    return SetConfig(key, str(value))


def _names_follow(p: TokenCursor, k: int) -> bool:
    return p.peek(k).kind in (IDENT, QUOTED)


def parse_ddl_statement(p: TokenCursor, query: Callable[[int], DataStatement]) -> Statement | None:
    """The statement at the cursor when it is one of this module's; None (nothing consumed) otherwise.

    :param query: parses the tokens from index ``i`` to the end as a query (for ``CREATE TABLE ... AS``).
    """
    first = p.peek()
    word = first.value.upper() if first.kind == IDENT else ""
    start = p.i
    stmt: Statement | None = None
    if word == "CREATE":
        k = 3 if p.peek(1).is_kw("OR") and p.peek(2).is_kw("REPLACE") else 1
        what = p.peek(k)
        if what.is_kw("TABLE"):
            p.i += k + 1
            if_not_exists = p.accept_kw("IF", "NOT", "EXISTS")
            stmt = parse_create_table(p, if_not_exists, k == 3, query)
        elif what.is_kw("CATALOG", "SCHEMA", "DATABASE"):
            if k == 3:
                raise p.error(
                    "SHARE, RECIPIENT, CATALOG or SCHEMA (OR REPLACE applies to tables and views)",
                    what,
                )
            p.i += k + 1
            if_not_exists = p.accept_kw("IF", "NOT", "EXISTS")
            stmt = parse_create_object(p, what.value.upper(), if_not_exists)
    elif word == "DROP" and p.peek(1).is_kw("CATALOG", "SCHEMA", "DATABASE", "TABLE"):
        p.advance()
        stmt = parse_drop_object(p, p.advance().value.upper())
    elif word == "ALTER" and p.peek(1).is_kw("TABLE"):
        p.i += 2
        name = ".".join(p.name("a table name", (1, 2, 3))) if not p.at_kw("DELTA") else None
        if name is None or p.at_kw("SET", "UNSET"):
            p.i = start  # SET TBLPROPERTIES and delta.`path` tables: the main parser's
            return None
        stmt = parse_alter_table(p, name)
    elif word == "SHOW" and p.peek(1).is_kw("CATALOGS", "SCHEMAS", "DATABASES"):
        p.advance()
        listed = p.advance().value.upper()
        stmt = parse_show_objects(p, "CATALOGS" if listed == "CATALOGS" else "SCHEMAS")
    elif word in ("DESCRIBE", "DESC") and p.peek(1).is_kw("CATALOG", "SCHEMA", "DATABASE"):
        k = 3 if p.peek(2).is_kw("EXTENDED") else 2
        if _names_follow(p, k):
            p.advance()
            stmt = parse_describe_object(p, p.advance().value.upper())
    elif word == "COMMENT" and p.peek(1).is_kw("ON"):
        if p.peek(2).is_kw("CATALOG", "SCHEMA", "DATABASE", "TABLE"):
            p.i += 2
            stmt = parse_comment_on_object(p, p.advance().value.upper())
    elif word in ("TRUNCATE", "OPTIMIZE", "VACUUM", "RESTORE", "SET"):
        p.advance()
        handler = {
            "TRUNCATE": parse_truncate,
            "OPTIMIZE": parse_optimize,
            "VACUUM": parse_vacuum,
            "RESTORE": parse_restore,
            "SET": parse_set,
        }[word]
        stmt = handler(p)
    if stmt is not None:
        p.expect_end("end of statement (';' separates statements)")
    return stmt
