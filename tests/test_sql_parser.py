"""The SQL tokenizer and parser: every statement form, lexical rules and syntax errors with positions."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from helpers import sql
from helpers.exceptions import SqlParseError
from helpers.sql import (
    AlterRecipientRevokeTokens,
    AlterRecipientRotateToken,
    AlterRecipientSetProperties,
    AlterShareAddSchema,
    AlterShareAddTable,
    AlterShareRemoveSchema,
    AlterShareRemoveTable,
    CreateRecipient,
    CreateShare,
    CreateTable,
    DataStatement,
    DescribeHistory,
    DescribeRecipient,
    DescribeShare,
    DescribeTable,
    DropRecipient,
    DropShare,
    GrantOnShare,
    PartitionValue,
    RevokeOnShare,
    SetTblProperties,
    ShowAllInShare,
    ShowGrantsOnShare,
    ShowGrantsToRecipient,
    ShowRecipients,
    ShowShares,
    ShowTables,
    ShowTblProperties,
)


def one(text: str) -> sql.Statement:
    return sql.parse_one(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CREATE SHARE s", CreateShare("s")),
        ("create share if not exists S comment 'c'", CreateShare("S", "c", True)),
        ("DROP SHARE s", DropShare("s")),
        ("drop share IF EXISTS s", DropShare("s", True)),
        ("SHOW SHARES", ShowShares()),
        ("SHOW ALL IN SHARE s", ShowAllInShare("s")),
        ("DESCRIBE SHARE s", DescribeShare("s")),
        ("DESC SHARE s", DescribeShare("s")),
        ("ALTER SHARE s ADD TABLE a.b.c", AlterShareAddTable("s", "a.b.c")),
        ("ALTER SHARE s ADD a.b.c", AlterShareAddTable("s", "a.b.c")),
        (
            "ALTER SHARE s ADD TABLE a.b.c COMMENT 'x' PARTITION (p = 'EU', q = 5) AS x.y WITH HISTORY",
            AlterShareAddTable(
                "s",
                "a.b.c",
                alias="x.y",
                comment="x",
                partition=(PartitionValue("p", "EU"), PartitionValue("q", 5)),
                history=True,
            ),
        ),
        (
            "ALTER SHARE s ADD TABLE a.b.c WITHOUT HISTORY AS x.y PARTITION (region = CURRENT_RECIPIENT().region)",
            AlterShareAddTable(
                "s", "a.b.c", alias="x.y", partition=(PartitionValue("region", "region", True),)
            ),
        ),
        (
            "ALTER SHARE s ADD TABLE a.b.c PARTITION (region = current_recipient('country'))",
            AlterShareAddTable(
                "s", "a.b.c", partition=(PartitionValue("region", "country", True),)
            ),
        ),
        (
            "ALTER SHARE s ADD TABLE a.b.c WITH CHANGE DATA FEED START VERSION 3",
            AlterShareAddTable("s", "a.b.c", history=True, start_version=3),
        ),
        (
            "ALTER SHARE s ADD TABLE delta.`/tmp/my table` AS x.y",
            AlterShareAddTable("s", "delta.`/tmp/my table`", alias="x.y"),
        ),
        ("ALTER SHARE s ADD SCHEMA a.b", AlterShareAddSchema("s", "a.b")),
        ("ALTER SHARE s ADD SCHEMA a.b WITH HISTORY", AlterShareAddSchema("s", "a.b", True)),
        ("ALTER SHARE s REMOVE TABLE x.y", AlterShareRemoveTable("s", "x.y")),
        ("ALTER SHARE s REMOVE SCHEMA a.b", AlterShareRemoveSchema("s", "a.b")),
        ("COMMENT ON SHARE s IS 'new'", sql.CommentOn("share", "s", "new")),
        ("COMMENT ON RECIPIENT r IS NULL", sql.CommentOn("recipient", "r", None)),
        ("CREATE RECIPIENT r", CreateRecipient("r")),
        (
            "CREATE RECIPIENT IF NOT EXISTS r PROPERTIES ('region' = 'US', 'tier' = 2) COMMENT 'c'",
            CreateRecipient("r", "c", (("region", "US"), ("tier", "2")), True),
        ),
        (
            "ALTER RECIPIENT r SET PROPERTIES ('a' = 'b')",
            AlterRecipientSetProperties("r", (("a", "b"),)),
        ),
        ("ALTER RECIPIENT r ROTATE TOKEN", AlterRecipientRotateToken("r", 0)),
        (
            "ALTER RECIPIENT r ROTATE TOKEN EXPIRE EXISTING TOKEN IN 3600 SECONDS",
            AlterRecipientRotateToken("r", 3600),
        ),
        ("ALTER RECIPIENT r REVOKE TOKENS", AlterRecipientRevokeTokens("r")),
        ("DROP RECIPIENT r", DropRecipient("r")),
        ("DROP RECIPIENT IF EXISTS r", DropRecipient("r", True)),
        ("SHOW RECIPIENTS", ShowRecipients()),
        ("DESCRIBE RECIPIENT r", DescribeRecipient("r")),
        ("GRANT SELECT ON SHARE s TO RECIPIENT r", GrantOnShare("s", "r")),
        ("REVOKE SELECT ON SHARE s FROM RECIPIENT r", RevokeOnShare("s", "r")),
        ("SHOW GRANTS ON SHARE s", ShowGrantsOnShare("s")),
        ("SHOW GRANT ON SHARE s", ShowGrantsOnShare("s")),
        ("SHOW GRANTS TO RECIPIENT r", ShowGrantsToRecipient("r")),
        ("CREATE TABLE a.b.c LOCATION '/p'", CreateTable("a.b.c", "/p")),
        (
            "CREATE OR REPLACE TABLE IF NOT EXISTS a.b.c USING DELTA LOCATION 'C:\\data\\t'",
            CreateTable("a.b.c", "C:\\data\\t", True, True),
        ),
        ("SHOW TABLES", ShowTables()),
        ("USE CATALOG acme", sql.Use(catalog="acme")),
        ("USE SCHEMA acme.retail", sql.Use(catalog="acme", schema="retail")),
        ("USE retail", sql.Use(schema="retail")),
        ("USE DATABASE retail", sql.Use(schema="retail")),
        ("SHOW TABLES IN a.b", ShowTables("a", "b")),
        ("DESCRIBE HISTORY a.b.c", DescribeHistory("a.b.c")),
        ("DESCRIBE HISTORY a.b.c LIMIT 2", DescribeHistory("a.b.c", 2)),
        ("DESCRIBE TABLE a.b.c", DescribeTable("a.b.c")),
        ("DESCRIBE EXTENDED a.b.c", DescribeTable("a.b.c")),
        (
            "ALTER TABLE a.b.c SET TBLPROPERTIES (delta.enableChangeDataFeed = true, 'owner' = 'me')",
            SetTblProperties("a.b.c", (("delta.enableChangeDataFeed", "true"), ("owner", "me"))),
        ),
        ("SHOW TBLPROPERTIES a.b.c", ShowTblProperties("a.b.c")),
        ("DESCRIBE HISTORY delta.`/t/x`", DescribeHistory("delta.`/t/x`")),
        ("DESCRIBE HISTORY customers", DescribeHistory("customers")),
        ("DESCRIBE TABLE delta.`/t/x`", DescribeTable("delta.`/t/x`")),
        (
            "ALTER TABLE delta.`/t/x` SET TBLPROPERTIES ('k' = 1.50)",
            SetTblProperties("delta.`/t/x`", (("k", "1.50"),)),
        ),
        (
            "ALTER SHARE s ADD TABLE a.b.c PARTITION (d = DATE '2024-01-01', f = -1.5, b = TRUE, n = NULL)",
            AlterShareAddTable(
                "s",
                "a.b.c",
                partition=(
                    PartitionValue("d", "2024-01-01"),
                    PartitionValue("f", -1.5),
                    PartitionValue("b", True),
                    PartitionValue("n", None),
                ),
            ),
        ),
    ],
)
def test_statement_forms(text: str, expected: sql.Statement) -> None:
    assert one(text) == expected
    # keywords are case-insensitive, and a trailing ';' changes nothing
    assert type(one(text.lower() + " ;")) is type(expected)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("SELECT * FROM a.b.c", "query"),
        ("with q as (select 1) select * from q", "query"),
        ("(SELECT 1)", "query"),
        ("VALUES (1, 2)", "query"),
        ("INSERT INTO a.b.c VALUES (1, 'x')", "insert"),
        ("UPDATE a.b.c SET x = 1 WHERE y = 2", "update"),
        ("DELETE FROM a.b.c WHERE y = 2", "delete"),
        (
            "MERGE INTO a.b.c t USING x.y.z s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "merge",
        ),
    ],
)
def test_data_statements_are_parsed_by_sqlglot(text: str, kind: str) -> None:
    stmt = one(text)
    assert isinstance(stmt, DataStatement)
    assert stmt.kind == kind
    assert stmt.text == text
    assert stmt.expression is not None


def test_comments_whitespace_and_several_statements() -> None:
    script = sql.parse(
        """
        -- a comment; with a semicolon
        CREATE SHARE a; /* block
        comment ; */ SHOW SHARES;;
        ;
        DROP SHARE a -- trailing
        """
    )
    assert script.statements == (CreateShare("a"), ShowShares(), DropShare("a"))
    assert script.texts[0] == "CREATE SHARE a"


def test_empty_script_has_no_statements() -> None:
    assert sql.parse("  -- nothing\n ; ;").statements == ()


def test_strings_quotes_semicolons_and_unicode() -> None:
    stmt = one("CREATE SHARE s COMMENT 'it''s; -- not a comment /* nor this */ ünï ☃'")
    assert stmt == CreateShare("s", "it's; -- not a comment /* nor this */ ünï ☃")
    assert one('CREATE SHARE s COMMENT "double ""quoted"""') == CreateShare("s", 'double "quoted"')
    # backticks quote names with any characters; a doubled backtick stands for itself
    assert one("CREATE SHARE `we;ird``name`") == CreateShare("we;ird`name")
    assert one("CREATE SHARE ünïcødé_share") == CreateShare("ünïcødé_share")


def test_data_statement_strings_use_doubled_quote_escape() -> None:
    stmt = one("SELECT 'it''s' AS x")
    assert stmt.expression.sql(dialect="duckdb") == "SELECT 'it''s' AS x"


def error_of(text: str) -> SqlParseError:
    with pytest.raises(SqlParseError) as info:
        sql.parse(text)
    return info.value


def test_error_names_line_column_and_expectation() -> None:
    err = error_of("SHOW SHARES;\nCREATE SHARE\n")
    assert (err.line, err.column) == (2, 13)
    assert "line 2, column 13" in str(err)
    assert "expected a share name" in str(err)
    assert "found end of statement" in str(err)

    err = error_of("GRANT SELECT ON SHARE s TO r")
    assert err.expected == "RECIPIENT"
    assert "found 'r'" in str(err) and "column 28" in str(err)

    err = error_of("GRANT INSERT ON SHARE s TO RECIPIENT r")
    assert "expected SELECT" in str(err)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("FOO BAR", "expected CREATE, DROP, ALTER"),
        ("123", "expected CREATE, DROP, ALTER"),
        ("CREATE SHARE s COMMENT", "the comment string"),
        ("CREATE SHARE s COMMENT 5", "the comment string"),
        ("CREATE SHARE s extra", "end of statement"),
        ("CREATE SHARE 'quoted'", "a share name"),
        ("CREATE VIEW v", "a three-part view name catalog.schema.view"),
        ("CREATE OR REPLACE SHARE s", "OR REPLACE only applies to CREATE TABLE"),
        ("CREATE TABLE a.b LOCATION '/x'", "three-part table name"),
        ("CREATE TABLE a.b.c (id INTEGRAL)", "expected a type (STRING, INT"),
        ("CREATE RECIPIENT r USING ID 'aws:x'", "Databricks-to-Databricks"),
        ("CREATE RECIPIENT r PROPERTIES ('a' = 'b', 'A' = 'c')", "each property once"),
        ("CREATE RECIPIENT r PROPERTIES ('a' 'b')", "'='"),
        ("CREATE RECIPIENT r PROPERTIES ('a' = NULL)", "a value other than NULL"),
        ("CREATE RECIPIENT r COMMENT 'a' COMMENT 'b'", "COMMENT at most once"),
        ("ALTER SHARE s ADD TABLE a.b", "catalog.schema.table"),
        ("ALTER SHARE s ADD TABLE a.b.c.d", "end of a table"),
        ("ALTER SHARE s ADD TABLE a.b.c AS x", "schema.table"),
        ("ALTER SHARE s ADD TABLE a.b.c COMMENT 'a' COMMENT 'b'", "COMMENT clause at most once"),
        ("ALTER SHARE s ADD TABLE a.b.c PARTITION (p = 1), (p = 2)", "one partition specification"),
        ("ALTER SHARE s ADD TABLE a.b.c PARTITION (p 1)", "'=' after partition column"),
        ("ALTER SHARE s ADD TABLE a.b.c PARTITION (p = CURRENT_RECIPIENT())", "'.'"),
        ("ALTER SHARE s ADD TABLE a.b.c WITH FRIENDS", "HISTORY or CHANGE DATA FEED"),
        ("ALTER SHARE s ADD TABLE a.b.c GARBAGE", "COMMENT, PARTITION, AS, WITH HISTORY"),
        ("ALTER SHARE s ADD TABLE delta.'/x' AS a.b", "a path in backticks"),
        ("ALTER SHARE s DROP TABLE x.y", "ADD or REMOVE"),
        ("ALTER SHARE s ADD SCHEMA a", "catalog.schema"),
        ("ALTER RECIPIENT r ROTATE TOKEN EXPIRE EXISTING IN -5 SECONDS", "a number of seconds"),
        ("ALTER RECIPIENT r ROTATE TOKEN EXPIRE EXISTING IN 5 MINUTES", "SECONDS or SECOND"),
        ("ALTER RECIPIENT r RENAME TO q", "SET, ROTATE or REVOKE"),
        ("ALTER TABLE a.b.c SET TBLPROPERTIES delta.x = 1", "'(' to start the property list"),
        ("SHOW GRANTS s", "ON SHARE or TO RECIPIENT"),
        ("COMMENT ON FUNCTION f IS 'x'", "SHARE or RECIPIENT"),
        ("COMMENT ON SHARE s IS 5", "the comment string or NULL"),
        ("SHOW EVERYTHING", "SHARES, ALL IN SHARE"),
        ("DESCRIBE", "SHARE, RECIPIENT, HISTORY or a table name"),
        ("REVOKE SELECT ON SHARE s TO RECIPIENT r", "FROM"),
        ("SELECT * FROM WHERE", "table name"),
        ("SELECT * FROM t WHERE", "expected a complete expression, found 'WHERE'"),
        ("SELECT", "the columns to select"),
        ("INSERT INTO t VALUES (1", "expected ')'"),
        ("MERGE INTO t", "found end of statement"),
        ("WITH x", "expected '('"),
        ("CREATE SHARE s COMMENT 'unterminated", "' to close the string"),
        ("CREATE SHARE `unterminated", "` to close the name"),
        ("CREATE SHARE s /* open comment", "'*/' to close the comment"),
    ],
)
def test_garbage_gets_a_positioned_error(text: str, fragment: str) -> None:
    err = error_of(text)
    assert fragment in str(err), str(err)
    assert str(err).startswith("Syntax error at line ")
    assert err.line >= 1 and err.column >= 1


def test_sqlglot_errors_are_mapped_to_script_positions() -> None:
    err = error_of("SHOW SHARES;\n\n  SELECT *\n  FROM WHERE x")
    assert err.line == 4
    assert err.column == 8  # the WHERE token
    assert "found 'WHERE'" in str(err)


def test_a_parse_error_anywhere_means_nothing_is_parsed() -> None:
    with pytest.raises(SqlParseError) as info:
        sql.parse("CREATE SHARE a; CREATE SHARE b; CREATE SHAR c")
    assert info.value.line == 1 and info.value.column == 40


def test_parse_one_rejects_several_statements() -> None:
    with pytest.raises(SqlParseError, match="exactly one statement"):
        sql.parse_one("SHOW SHARES; SHOW RECIPIENTS")


def test_non_text_input_is_rejected() -> None:
    with pytest.raises(SqlParseError, match="SQL text"):
        sql.parse(b"SHOW SHARES")  # type: ignore[arg-type]


def test_tokens_carry_positions() -> None:
    tokens = sql.tokenize("SHOW\n  SHARES -- x\n;")
    assert [(t.kind, t.value, t.line, t.col) for t in tokens] == [
        (sql.IDENT, "SHOW", 1, 1),
        (sql.IDENT, "SHARES", 2, 3),
        (sql.SYMBOL, ";", 3, 1),
        (sql.EOF, "", 3, 2),
    ]


def test_random_garbage_only_ever_raises_sql_parse_errors() -> None:
    words = (
        "CREATE SHARE RECIPIENT TABLE ALTER ADD REMOVE SCHEMA DROP IF NOT EXISTS SHOW ALL IN GRANT "
        "REVOKE SELECT ON TO FROM DESCRIBE HISTORY PARTITION AS WITH WITHOUT COMMENT PROPERTIES SET "
        "TBLPROPERTIES LOCATION delta . `/p` 's' ( ) , = ; 1 - CURRENT_RECIPIENT x a.b.c INSERT INTO "
        "VALUES UPDATE DELETE MERGE USING WHEN MATCHED THEN * ROTATE TOKEN EXPIRE SECONDS LIMIT NULL ü"
    ).split() + ["--c\n", "/*", "*/", "'", "`", '"', "\x00"]
    rng = random.Random(7)
    for _ in range(1500):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        try:
            sql.parse(text)
        except SqlParseError as exc:
            assert str(exc).startswith(("Syntax error at line", "expected")), (text, str(exc))


def test_the_language_does_not_import_the_provider() -> None:
    # helpers.sql is the pure language: parsing must not pull in the provider, catalog or engines
    code = (
        "import sys, helpers.sql as s; s.parse('SHOW SHARES; CREATE SHARE x'); "
        "print(sorted(m for m in sys.modules if m.startswith(('helpers.provider', 'helpers.catalog'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_partition_spec_parses_text_with_or_without_parentheses() -> None:
    assert sql.parse_partition_spec("region = 'EU'") == (PartitionValue("region", "EU"),)
    assert sql.parse_partition_spec("(region = CURRENT_RECIPIENT().region)") == (
        PartitionValue("region", "region", True),
    )
    with pytest.raises(SqlParseError, match="end of the partition specification"):
        sql.parse_partition_spec("(a = 1) x")
