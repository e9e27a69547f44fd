"""Catalogs, schemas, managed tables and table maintenance through the provider SQL (issue 14).

Every failing statement is checked to leave the catalog and the files as they were.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from helpers.catalog import AuditEvent
from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    SharelabError,
    SqlParseError,
)
from helpers.provider import Provider
from helpers.sql import parse, parse_one
from helpers.sql.ddl import (
    AlterColumnComment,
    CreateManagedTable,
    DropSchema,
    Optimize,
    RestoreTable,
    Vacuum,
)

T = "shop.sales.orders"


@pytest.fixture
def p(lab_home: Path) -> Provider:
    provider = Provider(lab_home)
    provider.sql("CREATE CATALOG shop COMMENT 'the shop'; CREATE SCHEMA shop.sales COMMENT 'sales'")
    return provider


def managed_dirs(home: Path) -> list[str]:
    root = home / "managed"
    if not root.exists():
        return []
    return sorted(str(d.relative_to(root)) for d in root.glob("*/*/*") if d.is_dir())


def snapshot(p: Provider) -> tuple[object, ...]:
    """The catalog's objects and the managed files: what a failed statement must not change."""
    return (
        p.show_catalogs().to_dict("records"),
        p.show_schemas().to_dict("records"),
        [t.name for t in p.catalog.list_tables()],
        managed_dirs(p.home.path),
    )


def orders(p: Provider, extra: str = "") -> None:
    p.sql(
        f"""CREATE TABLE {T} (order_id INT NOT NULL COMMENT 'the order', region STRING,
        amount DECIMAL(10,2), placed DATE) {extra} COMMENT 'orders'"""
    )
    p.sql(
        f"""INSERT INTO {T} VALUES (1, 'EU', 10.50, '2024-01-01'), (2, 'US', 20.00, '2024-01-02'),
        (3, 'EU', 30.25, '2024-01-03')"""
    )


# ---------------------------------------------------------------------------------------------- parsing


def test_parse_object_statements() -> None:
    script = parse(
        "CREATE CATALOG IF NOT EXISTS c COMMENT 'x'; CREATE DATABASE c.s; DROP SCHEMA s CASCADE;"
        "SHOW SCHEMAS IN c LIKE 'r*'; DESCRIBE CATALOG EXTENDED c; COMMENT ON SCHEMA c.s IS NULL;"
        "OPTIMIZE t WHERE region = 'EU' ZORDER BY (a, b); VACUUM t RETAIN 2.5 HOURS DRY RUN;"
        "RESTORE t TO TIMESTAMP AS OF '2024-01-01'; ALTER TABLE t CHANGE COLUMN a COMMENT 'x'"
    )
    kinds = [type(s).__name__ for s in script.statements]
    assert kinds == [
        "CreateCatalog",
        "CreateSchema",
        "DropSchema",
        "ShowSchemas",
        "DescribeCatalog",
        "CommentOnObject",
        "Optimize",
        "Vacuum",
        "RestoreTable",
        "AlterColumnComment",
    ]
    assert script.statements[2] == DropSchema("s", cascade=True)
    assert script.statements[6] == Optimize("t", "region = 'EU'", ("a", "b"))
    assert script.statements[7] == Vacuum("t", 2.5, True)
    assert script.statements[8] == RestoreTable("t", timestamp="2024-01-01")
    assert script.statements[9] == AlterColumnComment("t", "a", "x")


def test_parse_create_table_types() -> None:
    stmt = parse_one(
        "CREATE OR REPLACE TABLE t (a STRING, b INT NOT NULL COMMENT 'b', c BIGINT, d SMALLINT, "
        "e TINYINT, f BOOLEAN, g DOUBLE, h FLOAT, i DECIMAL(12,3), j DATE, k TIMESTAMP, "
        "l TIMESTAMP_NTZ, m BINARY, n ARRAY<STRING>, o STRUCT<x: INT, y STRING>, "
        "q MAP<STRING, ARRAY<INT>>) USING DELTA PARTITIONED BY (a) COMMENT 'c' "
        "TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    assert isinstance(stmt, CreateManagedTable) and stmt.replace
    assert [c.type.sql for c in stmt.columns] == [
        "string",
        "int",
        "bigint",
        "smallint",
        "tinyint",
        "boolean",
        "double",
        "float",
        "decimal(12,3)",
        "date",
        "timestamp",
        "timestamp_ntz",
        "binary",
        "array<string>",
        "struct<x:int,y:string>",
        "map<string,array<int>>",
    ]
    assert not stmt.columns[1].nullable and stmt.columns[1].comment == "b"
    assert stmt.partitioned_by == ("a",) and stmt.comment == "c"
    assert stmt.properties == (("delta.enableChangeDataFeed", "true"),)
    ctas = parse_one("CREATE TABLE t COMMENT 'x' AS SELECT 1 AS a")
    assert isinstance(ctas, CreateManagedTable) and ctas.query is not None
    assert ctas.query.text == "SELECT 1 AS a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CREATE TABLE t (a VARCHAR2)", "expected a type"),
        ("CREATE TABLE t", "'(' and the columns, AS SELECT ... or LOCATION"),
        ("CREATE TABLE t (a INT, A STRING)", "each column name once"),
        ("CREATE TABLE t (a DECIMAL(39,2))", "DECIMAL(p, s) with 1 <= p <= 38"),
        ("CREATE TABLE t (a INT) USING PARQUET", "DELTA"),
        ("CREATE TABLE t (a INT) AS SELECT 1", "no column list with AS SELECT"),
        ("CREATE TABLE c.s.t (a INT) LOCATION '/x'", "LOCATION '/path' alone"),
        ("CREATE TABLE t (a ARRAY<INT)", "'>' to close ARRAY"),
        ("CREATE TABLE t (a INT) COMMENT 'x' COMMENT 'y'", "COMMENT at most once"),
        ("DROP SCHEMA s CASCADE now", "CASCADE, RESTRICT or end of statement"),
        ("VACUUM t RETAIN many HOURS", "a number of hours"),
        ("RESTORE TABLE t TO VERSION AS OF 'x'", "a version number"),
        ("ALTER TABLE t RENAME COLUMN a TO b", "column mapping"),
        ("ALTER TABLE t ALTER COLUMN a TYPE BIGINT", "COMMENT 'text'"),
        ("TRUNCATE TABLE t PARTITION (a = 1)", "DELETE FROM"),
        ("CREATE CATALOG c MANAGED LOCATION 's3://x'", "the lab stores catalogs"),
        ("SET spark.x", "'=' after spark.x"),
    ],
)
def test_parse_errors(text: str, expected: str) -> None:
    with pytest.raises(SqlParseError, match=r"Syntax error at line 1, column \d+") as info:
        parse(text)
    assert expected in str(info.value)


# ---------------------------------------------------------------------------------------------- catalogs


def test_catalogs_and_schemas(p: Provider, lab_home: Path) -> None:
    shown = p.sql("SHOW CATALOGS")
    assert shown["catalog"].tolist() == ["shop"] and shown["comment"].tolist() == ["the shop"]
    assert p.sql("SHOW SCHEMAS IN shop")["databaseName"].tolist() == ["default", "sales"]
    assert (
        "already exists (IF NOT EXISTS)" in p.sql("CREATE CATALOG IF NOT EXISTS shop")["status"][0]
    )
    p.sql(
        "USE CATALOG shop; CREATE SCHEMA IF NOT EXISTS hr; CREATE SCHEMA IF NOT EXISTS hr COMMENT 'x'"
    )
    assert p.sql("SHOW SCHEMAS LIKE 'h*|s*'")["databaseName"].tolist() == ["hr", "sales"]
    described = dict(p.sql("DESCRIBE SCHEMA shop.sales").values.tolist())
    assert described["Comment"] == "sales" and described["Namespace Name"] == "sales"
    p.sql("COMMENT ON CATALOG shop IS 'renamed'; COMMENT ON SCHEMA hr IS NULL")
    info = dict(p.sql("DESCRIBE CATALOG shop").values.tolist())
    assert info["Comment"] == "renamed" and info["Schemas"] == "3"
    assert dict(p.sql("DESCRIBE SCHEMA hr").values.tolist())["Comment"] is None

    # an implicit catalog (a registered external table) is listed too
    location = lab_home / "ext"
    write_deltalake(str(location), pa.table({"x": [1]}))
    p.sql(f"CREATE TABLE legacy.old.t LOCATION '{location}'")
    assert p.sql("SHOW CATALOGS")["catalog"].tolist() == ["legacy", "shop"]
    assert p.sql("SHOW SCHEMAS IN legacy")["databaseName"].tolist() == ["old"]

    before = snapshot(p)
    for bad, error in [
        ("CREATE CATALOG shop", AlreadyExistsError),
        ("CREATE SCHEMA shop.sales", AlreadyExistsError),
        ("CREATE SCHEMA nowhere.x", NotFoundError),
        ("DESCRIBE CATALOG nowhere", NotFoundError),
        ("SHOW SCHEMAS IN nowhere", NotFoundError),
        ("COMMENT ON SCHEMA shop.nowhere IS 'x'", NotFoundError),
        ("DROP CATALOG nowhere", NotFoundError),
        ("DROP SCHEMA shop.nowhere", NotFoundError),
        ("CREATE CATALOG `bad name`", Exception),
    ]:
        with pytest.raises(error):
            p.sql(bad)
    assert snapshot(p) == before
    assert "does not exist (IF EXISTS)" in p.sql("DROP SCHEMA IF EXISTS shop.nowhere")["status"][0]


def test_drop_schema_and_catalog_restrict_and_cascade(p: Provider, lab_home: Path) -> None:
    orders(p)
    assert len(managed_dirs(lab_home)) == 1
    before = snapshot(p)
    with pytest.raises(InvalidArgumentError, match="is not empty .*DROP SCHEMA shop.sales CASCADE"):
        p.sql("DROP SCHEMA shop.sales")
    with pytest.raises(InvalidArgumentError, match="catalog 'shop' is not empty"):
        p.sql("DROP CATALOG shop RESTRICT")
    # a share names the table: CASCADE is refused too, naming the share
    p.sql(f"CREATE SHARE s1; ALTER SHARE s1 ADD TABLE {T}")
    with pytest.raises(InvalidArgumentError, match="shared in share s1"):
        p.sql("DROP SCHEMA shop.sales CASCADE")
    p.sql("ALTER SHARE s1 REMOVE TABLE sales.orders; ALTER SHARE s1 ADD SCHEMA shop.sales")
    with pytest.raises(InvalidArgumentError, match="schema shop.sales is shared in share s1"):
        p.sql("DROP CATALOG shop CASCADE")
    assert snapshot(p) == before
    p.sql("ALTER SHARE s1 REMOVE SCHEMA shop.sales")
    assert "1 table" in p.sql("DROP SCHEMA shop.sales CASCADE")["status"][0]
    assert managed_dirs(lab_home) == [] and p.catalog.list_tables() == []
    p.sql("DROP CATALOG shop")  # only its default schema is left: RESTRICT passes
    assert p.sql("SHOW CATALOGS").empty


# ---------------------------------------------------------------------------------------------- tables


def test_create_table_types_comments_and_constraints(p: Provider, lab_home: Path) -> None:
    p.sql(
        "USE CATALOG shop; USE SCHEMA sales; CREATE TABLE kinds (a STRING, b INT NOT NULL COMMENT 'b', "
        "c BIGINT, d SMALLINT, e TINYINT, f BOOLEAN, g DOUBLE, h FLOAT, i DECIMAL(12,3), j DATE, "
        "k TIMESTAMP, l TIMESTAMP_NTZ, m BINARY, n ARRAY<STRING>, o STRUCT<x: INT, y STRING>, "
        "q MAP<STRING, BIGINT>) COMMENT 'all types'"
    )
    described = p.sql("DESCRIBE TABLE kinds")
    assert described["data_type"].tolist() == [
        "string",
        "int",
        "bigint",
        "smallint",
        "tinyint",
        "boolean",
        "double",
        "float",
        "decimal(12,3)",
        "date",
        "timestamp",
        "timestamp_ntz",
        "binary",
        "array<string>",
        "struct<x:int,y:string>",
        "map<string,bigint>",
    ]
    assert described.set_index("col_name").loc["b", "comment"] == "b"
    assert not described.set_index("col_name").loc["b", "nullable"]
    location = p.catalog.get_table("shop.sales.kinds").location
    assert Path(location).is_relative_to(lab_home / "managed" / "shop" / "sales")
    dt_ = DeltaTable(location)
    assert dt_.version() == 0 and dt_.metadata().description == "all types"
    p.sql("INSERT INTO kinds (b, i, j, n) VALUES (1, 1.5, '2024-02-29', array('x', 'y'))")
    row = p.sql("SELECT b, i, j, n FROM kinds").iloc[0]
    assert row["b"] == 1 and row["i"] == Decimal("1.500") and row["j"] == dt.date(2024, 2, 29)
    with pytest.raises(InvalidArgumentError, match="NOT NULL"):
        p.sql("INSERT INTO kinds (a) VALUES ('no b')")
    assert DeltaTable(location).version() == 1


def test_create_table_options_and_failures_change_nothing(p: Provider, lab_home: Path) -> None:
    orders(p, "PARTITIONED BY (region) TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    dt_ = DeltaTable(p.catalog.get_table(T).location)
    assert dt_.metadata().partition_columns == ["region"]
    assert dt_.metadata().configuration["delta.enableChangeDataFeed"] == "true"
    p.sql(f"UPDATE {T} SET amount = 11 WHERE order_id = 1")
    changes = p.sql(f"SELECT _change_type FROM table_changes('{T}', 2)")
    assert sorted(changes["_change_type"]) == ["update_postimage", "update_preimage"]
    assert (
        "already exists (IF NOT EXISTS)"
        in p.sql(f"CREATE TABLE IF NOT EXISTS {T} (x INT)")["status"][0]
    )

    before = snapshot(p)
    version = DeltaTable(p.catalog.get_table(T).location).version()
    for bad, error, match in [
        (f"CREATE TABLE {T} (x INT)", AlreadyExistsError, "already exists"),
        ("CREATE TABLE shop.nowhere.t (x INT)", NotFoundError, "CREATE SCHEMA"),
        ("CREATE TABLE t (x INT)", InvalidArgumentError, "USE CATALOG c and USE SCHEMA s"),
        ("CREATE TABLE shop.sales.p (x INT) PARTITIONED BY (y)", InvalidArgumentError, "partition"),
        (
            "CREATE TABLE shop.sales.q (x INT) TBLPROPERTIES (delta.noSuchThing = 1)",
            InvalidArgumentError,
            "cannot create",
        ),
        ("CREATE TABLE shop.sales.r AS SELECT * FROM nowhere", NotFoundError, "not registered"),
        ("CREATE TABLE shop.sales.s AS SELECT nope AS a", InvalidArgumentError, "query failed"),
        ("CREATE TABLE shop.sales.s AS SELECT 1 +", SqlParseError, "Syntax error"),
    ]:
        with pytest.raises(error, match=match):
            p.sql(bad)
    assert snapshot(p) == before
    assert DeltaTable(p.catalog.get_table(T).location).version() == version


def test_ctas_and_create_or_replace_keep_history(p: Provider) -> None:
    orders(p)
    p.sql(
        "CREATE TABLE shop.sales.eu COMMENT 'EU only' AS "
        f"SELECT order_id, amount * 2 AS doubled FROM {T} WHERE region = 'EU'"
    )
    frame = p.sql("SELECT * FROM shop.sales.eu ORDER BY order_id")
    assert frame["order_id"].tolist() == [1, 3]
    assert frame["doubled"].tolist() == [Decimal("21.00"), Decimal("60.50")]
    history = p.sql("DESCRIBE HISTORY shop.sales.eu")
    assert history["version"].tolist() == [0]
    p.sql("CREATE OR REPLACE TABLE shop.sales.eu (order_id BIGINT, note STRING)")
    assert p.sql("SELECT count(*) AS n FROM shop.sales.eu")["n"][0] == 0
    assert p.sql("DESCRIBE HISTORY shop.sales.eu")["version"].tolist() == [1, 0]
    assert p.sql("DESCRIBE shop.sales.eu")["col_name"].tolist() == ["order_id", "note"]
    old = p.sql("SELECT count(*) AS n FROM shop.sales.eu VERSION AS OF 0")
    assert old["n"][0] == 2


def test_drop_table_managed_external_and_shared(p: Provider, lab_home: Path) -> None:
    orders(p)
    location = Path(p.catalog.get_table(T).location)
    external = lab_home / "ext"
    write_deltalake(str(external), pa.table({"x": [1, 2]}))
    p.sql(f"CREATE TABLE shop.sales.ext LOCATION '{external}'")
    p.sql(f"CREATE SHARE s1; ALTER SHARE s1 ADD TABLE {T} AS sales.o")

    before = snapshot(p)
    with pytest.raises(
        InvalidArgumentError, match=r"shared in share s1 \(as sales.o\).*REMOVE TABLE"
    ):
        p.sql(f"DROP TABLE {T}")
    assert snapshot(p) == before and location.exists()

    p.sql("ALTER SHARE s1 REMOVE TABLE sales.o")
    assert "its files deleted" in p.sql(f"DROP TABLE {T}")["status"][0]
    assert not location.exists() and list((lab_home / "managed" / ".dropped").glob("*")) == []
    assert "files at" in p.sql("DROP TABLE shop.sales.ext")["status"][0]
    assert (external / "_delta_log").exists()
    assert "IF EXISTS" in p.sql(f"DROP TABLE IF EXISTS {T}")["status"][0]
    with pytest.raises(NotFoundError):
        p.sql(f"DROP TABLE {T}")
    # a dropped name can be created again, from version 0
    orders(p)
    assert p.sql(f"DESCRIBE HISTORY {T}")["version"].tolist() == [1, 0]
    # a managed name re-pointed at other files is external from then on: DROP keeps those files
    p.sql(f"CREATE OR REPLACE TABLE {T} LOCATION '{external}'")
    assert "files at" in p.sql(f"DROP TABLE {T}")["status"][0]
    assert (external / "_delta_log").exists()


def test_alter_table_add_rename_comment(p: Provider) -> None:
    orders(p)
    p.sql(f"CREATE SHARE s1; ALTER SHARE s1 ADD TABLE {T}")
    p.sql(f"ALTER TABLE {T} ADD COLUMNS (channel STRING COMMENT 'web or shop', tags ARRAY<STRING>)")
    described = p.sql(f"DESCRIBE {T}").set_index("col_name")
    assert described.loc["channel", "comment"] == "web or shop"
    assert p.sql(f"SELECT count(channel) AS n FROM {T}")["n"][0] == 0
    p.sql(f"ALTER TABLE {T} ALTER COLUMN region COMMENT 'sales region'")
    assert p.sql(f"DESCRIBE {T}").set_index("col_name").loc["region", "comment"] == "sales region"
    p.sql(f"COMMENT ON TABLE {T} IS 'all orders'")
    assert DeltaTable(p.catalog.get_table(T).location).metadata().description == "all orders"

    version = DeltaTable(p.catalog.get_table(T).location).version()
    before = snapshot(p)
    for bad, match in [
        (f"ALTER TABLE {T} ADD COLUMNS (region STRING)", "already exists"),
        (f"ALTER TABLE {T} ADD COLUMN must INT NOT NULL", "NOT NULL"),
        (f"ALTER TABLE {T} ALTER COLUMN nope COMMENT 'x'", "does not exist"),
        (f"ALTER TABLE {T} RENAME TO other.orders2", "does not exist"),
        (f"ALTER TABLE {T} RENAME TO elsewhere.sales.orders2", "not to catalog elsewhere"),
    ]:
        with pytest.raises((InvalidArgumentError, NotFoundError), match=match):
            p.sql(bad)
    assert snapshot(p) == before
    assert DeltaTable(p.catalog.get_table(T).location).version() == version

    p.sql("CREATE TABLE shop.sales.taken (x INT)")
    with pytest.raises(AlreadyExistsError):
        p.sql(f"ALTER TABLE {T} RENAME TO taken")
    p.sql(f"ALTER TABLE {T} RENAME TO orders_v2")
    assert p.sql("SHOW ALL IN SHARE s1")["shared_object"].tolist() == ["shop.sales.orders_v2"]
    assert p.sql("SELECT count(*) AS n FROM shop.sales.orders_v2")["n"][0] == 3


# ---------------------------------------------------------------------------------------------- maintenance


def test_truncate_and_restore(p: Provider) -> None:
    orders(p)
    assert "3 rows removed" in p.sql(f"TRUNCATE TABLE {T}")["status"][0]
    assert p.sql(f"SELECT count(*) AS n FROM {T}")["n"][0] == 0
    restored = p.sql(f"RESTORE TABLE {T} TO VERSION AS OF 1")
    assert restored["version"][0] == 3
    assert p.sql(f"SELECT count(*) AS n FROM {T}")["n"][0] == 3
    stamp = p.sql(f"DESCRIBE HISTORY {T}").set_index("version").loc[0, "timestamp"]
    p.sql(f"RESTORE {T} TO TIMESTAMP AS OF '{stamp.isoformat()}'")
    assert p.sql(f"SELECT count(*) AS n FROM {T}")["n"][0] == 0
    assert p.sql(f"DESCRIBE HISTORY {T} LIMIT 1")["operation"][0] == "RESTORE"
    with pytest.raises(InvalidArgumentError, match="choose 0 to"):
        p.sql(f"RESTORE TABLE {T} TO VERSION AS OF 99")
    with pytest.raises(NotFoundError):
        p.sql("TRUNCATE TABLE shop.sales.nowhere")


def test_optimize_compacts_files(p: Provider) -> None:
    orders(p, "PARTITIONED BY (region)")
    for i in range(4):
        p.sql(f"INSERT INTO {T} VALUES ({10 + i}, 'EU', 1.00, '2024-02-01')")
    location = p.catalog.get_table(T).location
    files_before = len(DeltaTable(location).file_uris())
    result = p.sql(f"OPTIMIZE {T} WHERE region = 'EU'")
    metrics = result["metrics"][0]
    assert metrics["numFilesRemoved"] == 5 and metrics["numFilesAdded"] == 1
    assert len(DeltaTable(location).file_uris()) == files_before - 4
    assert p.sql(f"SELECT count(*) AS n FROM {T}")["n"][0] == 7
    p.sql(f"OPTIMIZE {T} ZORDER BY (order_id)")
    version = DeltaTable(location).version()
    for bad, match in [
        (f"OPTIMIZE {T} WHERE amount > 1", "partition columns"),
        (f"OPTIMIZE {T} ZORDER BY (nope)", "does not exist"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            p.sql(bad)
    assert DeltaTable(location).version() == version


def test_vacuum_retention_check(p: Provider) -> None:
    orders(p)
    p.sql(f"DELETE FROM {T} WHERE region = 'EU'")  # the first data file is no longer current
    location = Path(p.catalog.get_table(T).location)
    parquet = sorted(location.glob("*.parquet"))
    # 7 days by default: nothing is old enough
    assert p.sql(f"VACUUM {T}")["num_deleted_files"][0] == 0
    with pytest.raises(
        InvalidArgumentError, match="retentionDurationCheck.enabled = false"
    ) as info:
        p.sql(f"VACUUM {T} RETAIN 0 HOURS")
    assert "168 hours" in str(info.value)
    assert sorted(location.glob("*.parquet")) == parquet
    with pytest.raises(InvalidArgumentError, match="takes true or false"):
        p.sql("SET spark.databricks.delta.retentionDurationCheck.enabled = 'maybe'")
    with pytest.raises(InvalidArgumentError, match="no setting"):
        p.sql("SET spark.sql.shuffle.partitions = 4")
    p.sql("SET spark.databricks.delta.retentionDurationCheck.enabled = false")
    dry = p.sql(f"VACUUM {T} RETAIN 0 HOURS DRY RUN")
    assert len(dry) == 1 and sorted(location.glob("*.parquet")) == parquet
    time.sleep(0.01)
    assert p.sql(f"VACUUM {T} RETAIN 0 HOURS")["num_deleted_files"][0] == 1
    assert len(list(location.glob("*.parquet"))) == len(parquet) - 1
    assert p.sql(f"SELECT count(*) AS n FROM {T}")["n"][0] == 1
    with pytest.raises(InvalidArgumentError):  # version 1's file is gone, as in Databricks
        p.sql(f"SELECT count(*) FROM {T} VERSION AS OF 1")


# ---------------------------------------------------------------------------------------------- audit


def test_audit_has_databricks_and_lab_columns(p: Provider) -> None:
    orders(p)
    p.sql(f"CREATE SHARE s1; ALTER SHARE s1 ADD TABLE {T} AS sales.o")
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    p.catalog.record_audit(
        [
            AuditEvent(
                "queryTable",
                event_time=when,
                recipient="partner",
                share="s1",
                schema="sales",
                table="o",
                version=1,
                num_files=1,
                has_limit_hint=True,
                status_code=200,
                user_agent="Delta-Sharing-Python/1.3.3",
                client_address="127.0.0.1",
            ),
            AuditEvent("listShares", event_time=when, recipient="partner", status_code=401),
        ]
    )
    frame = p.sql(
        """SELECT event_time, event_date, action_name, service_name, request_params.table_full_name AS t,
                  request_params['recipient_name'] AS r, request_params.share_name AS s,
                  request_params.limitHint AS l, response.status_code AS code, source_ip_address,
                  user_agent, action, recipient, status_code
           FROM system.access.audit ORDER BY action_name"""
    )
    rows = frame.to_dict("records")
    assert rows[0]["action_name"] == "deltaSharingListShares" and rows[0]["code"] == 401
    assert rows[0]["t"] is None and rows[0]["r"] == "partner"
    q = rows[1]
    assert q["action_name"] == "deltaSharingQueryTable" and q["service_name"] == "unityCatalog"
    assert (q["t"], q["r"], q["s"], q["l"], q["code"]) == (T, "partner", "s1", "true", 200)
    assert q["event_date"] == dt.date(2024, 5, 1) and q["source_ip_address"] == "127.0.0.1"
    assert (q["action"], q["recipient"], q["status_code"]) == ("queryTable", "partner", 200)
    # the course's D2D query runs (no Databricks-to-Databricks credential events in the lab)
    course = p.sql(
        "SELECT event_time, request_params.table_full_name, request_params.recipient_name, "
        "request_params.share_name FROM system.access.audit WHERE action_name = "
        "'generateTemporaryTableCredential' AND user_agent = 'Delta Sharing' ORDER BY event_time DESC"
    )
    assert course.empty and len(course.columns) == 4
    audit = p.audit()
    assert (
        audit.loc[audit["action"] == "queryTable", "request_params"].iloc[0]["table_full_name"] == T
    )
    with pytest.raises(InvalidArgumentError, match="read-only"):
        p.sql("DELETE FROM system.access.audit")


def test_every_sql_example_in_the_docs_parses() -> None:
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "sql.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 10
    for block in blocks:
        assert parse(block).statements


def test_failures_midway_leave_catalog_and_files_unchanged(
    p: Provider, lab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders(p)
    p.sql("CREATE TABLE shop.sales.second (x INT)")
    before = snapshot(p)

    # the catalog write of a new table fails after its files were written: the files go again
    def refuse(name: str) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(p.catalog, "mark_managed", refuse)
    with pytest.raises(RuntimeError):
        p.sql("CREATE TABLE shop.sales.third (x INT)")
    monkeypatch.undo()
    assert snapshot(p) == before

    # moving the second table's files aside fails: the first one's come back, nothing is dropped
    import helpers.provider.objects as ddl_module

    real_replace = ddl_module.os.replace
    calls: list[object] = []

    def flaky_replace(src: object, dst: object) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise OSError("device busy")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(ddl_module.os, "replace", flaky_replace)
    with pytest.raises(SharelabError, match="device busy; nothing was dropped"):
        p.sql("DROP SCHEMA shop.sales CASCADE")
    monkeypatch.undo()
    assert len(calls) == 3  # two moves aside, one move back
    assert snapshot(p) == before
    assert p.sql(f"SELECT count(*) AS n FROM {T}")["n"][0] == 3
