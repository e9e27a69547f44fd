"""The provider's SQL, Databricks dialect: the pure language (tokenizer, statements, parser).

Nothing here runs a statement: :mod:`helpers.provider` executes parsed statements against the catalog and
the Delta tables (see :mod:`helpers.provider.executor`), and owns the ``sharelab sql`` command.

* :mod:`helpers.sql.lexer`: tokens with positions, lexical rules;
* :mod:`helpers.sql.statements`: one frozen dataclass per statement form;
* :mod:`helpers.sql.cursor` and :mod:`helpers.sql.parser`: the recursive-descent parser, ``parse()``;
* :mod:`helpers.sql.dialect`: the sqlglot dialect of data statements.

The grammar (``[]`` optional, ``|`` alternatives, ``{}`` any order)::

    CREATE SHARE [IF NOT EXISTS] share [COMMENT 'text']
    DROP SHARE [IF EXISTS] share
    ALTER SHARE share ADD [TABLE] <catalog.schema.table | delta.`/path`>
        {COMMENT 'text' | PARTITION (col = literal | col = CURRENT_RECIPIENT().prop, ...)
         | AS schema.table | WITH HISTORY | WITHOUT HISTORY}
    ALTER SHARE share ADD SCHEMA catalog.schema [WITH HISTORY | WITHOUT HISTORY]
    ALTER SHARE share REMOVE TABLE schema.table | ALTER SHARE share REMOVE SCHEMA schema
    SHOW SHARES | SHOW ALL IN SHARE share | DESCRIBE SHARE share
    COMMENT ON { SHARE share | RECIPIENT recipient } IS { 'text' | NULL }
    CREATE RECIPIENT [IF NOT EXISTS] recipient {COMMENT 'text' | PROPERTIES ('key' = 'value', ...)}
    ALTER RECIPIENT recipient SET PROPERTIES ('key' = 'value', ...)
    ALTER RECIPIENT recipient ROTATE TOKEN [EXPIRE EXISTING [TOKEN] IN n SECONDS]
    ALTER RECIPIENT recipient REVOKE TOKENS
    DROP RECIPIENT [IF EXISTS] recipient
    SHOW RECIPIENTS | DESCRIBE RECIPIENT recipient
    GRANT SELECT ON SHARE share TO RECIPIENT recipient
    REVOKE SELECT ON SHARE share FROM RECIPIENT recipient
    SHOW GRANTS ON SHARE share | SHOW GRANTS TO RECIPIENT recipient
    CREATE [OR REPLACE] TABLE [IF NOT EXISTS] catalog.schema.table [USING DELTA] LOCATION '/path'
    USE CATALOG catalog | USE SCHEMA [catalog.]schema | USE [catalog.]schema
    SHOW TABLES [IN catalog[.schema]] | DESCRIBE [TABLE] table | DESCRIBE HISTORY table [LIMIT n]
    ALTER TABLE table SET TBLPROPERTIES (key = value, ...) | SHOW TBLPROPERTIES table
    SELECT ... | WITH ... | INSERT INTO ... | UPDATE ... | DELETE FROM ... | MERGE INTO ...

Catalogs, schemas, managed tables (``CREATE TABLE name (columns)``, ``... AS SELECT``, ``DROP TABLE``,
``ALTER TABLE ... ADD COLUMNS / RENAME TO / ALTER COLUMN ... COMMENT``) and table maintenance
(``TRUNCATE``, ``OPTIMIZE``, ``VACUUM``, ``RESTORE``, ``SET``): :mod:`helpers.sql.ddl`.
"""

from __future__ import annotations

from helpers.sql.dialect import sqlglot_dialect
from helpers.sql.lexer import EOF, IDENT, NUMBER, QUOTED, STRING, SYMBOL, Token, tokenize
from helpers.sql.parser import ParsedScript, parse, parse_one, parse_partition_spec
from helpers.sql.statements import *  # noqa: F403
from helpers.sql.statements import __all__ as _statement_names

__all__ = [
    "EOF",
    "IDENT",
    "NUMBER",
    "QUOTED",
    "STRING",
    "SYMBOL",
    "ParsedScript",
    "Token",
    "parse",
    "parse_one",
    "parse_partition_spec",
    "sqlglot_dialect",
    "tokenize",
    *_statement_names,
]
