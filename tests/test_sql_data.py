"""Data statements on real Delta tables: SELECT via DuckDB, writes via deltalake, change data feed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from helpers.catalog import AuditEvent
from helpers.exceptions import InvalidArgumentError, NotFoundError, SqlParseError
from helpers.provider import MergeClause, Provider

UTC = dt.UTC
T = "acme.retail.customers"

SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.int32()),
        pa.field("customer_name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("country", pa.string()),
        pa.field("signup_date", pa.date32()),
        pa.field("balance", pa.decimal128(10, 2)),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def customers_table() -> pa.Table:
    ts = dt.datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    return pa.table(
        {
            "customer_id": [1, 2, 3, 4],
            "customer_name": ["Acme", "Globex", "Initech", "Umbrella"],
            "email": ["a@acme.com", "g@globex.com", "i@initech.com", "u@umbrella.com"],
            "country": ["US", "FR", "US", "JP"],
            "signup_date": [dt.date(2024, 1, d) for d in (1, 2, 3, 4)],
            "balance": [Decimal("10.50"), Decimal("20.00"), Decimal("0.00"), Decimal("99.99")],
            "updated_at": [ts] * 4,
        },
        schema=SCHEMA,
    )


@pytest.fixture
def provider(lab_home: Path) -> Provider:
    return Provider(lab_home)


@pytest.fixture
def customers(provider: Provider, lab_home: Path) -> Path:
    location = lab_home / "tables" / "customers"
    write_deltalake(str(location), customers_table())
    provider.sql(f"CREATE TABLE {T} LOCATION '{location}'")
    return location


def version(location: Path) -> int:
    return DeltaTable(str(location)).version()


def rows(location: Path) -> pd.DataFrame:
    return DeltaTable(str(location)).to_pandas().sort_values("customer_id", ignore_index=True)


# -- reads ---------------------------------------------------------------------------------------


def test_select_resolves_catalog_names(provider: Provider, customers: Path) -> None:
    frame = provider.sql(
        f"SELECT country, count(*) AS n, sum(balance) AS total FROM {T} "
        "GROUP BY country ORDER BY country"
    )
    assert frame["country"].tolist() == ["FR", "JP", "US"]
    assert frame["n"].tolist() == [1, 1, 2]
    assert frame["total"].tolist() == [Decimal("20.00"), Decimal("99.99"), Decimal("10.50")]
    sums = provider.sql(f"SELECT sum(customer_id) AS ids FROM {T}")
    assert sums["ids"].dtype == "int64" and sums["ids"].tolist() == [10]  # not DuckDB's HUGEINT
    # short names resolve when unique; table-qualified columns keep working
    short = provider.sql(
        "SELECT customers.customer_id FROM customers WHERE customers.country = 'JP'"
    )
    assert short["customer_id"].tolist() == [4]
    assert len(provider.sql("SELECT * FROM retail.customers")) == 4
    # timestamps stay tz-aware UTC
    full = provider.select(f"SELECT * FROM {T} ORDER BY customer_id")
    assert str(full["updated_at"].dt.tz) == "UTC"
    assert full.loc[0, "updated_at"] == pd.Timestamp("2024-01-15 12:00", tz="UTC")


def test_select_joins_ctes_time_travel_and_paths(
    provider: Provider, customers: Path, lab_home: Path
) -> None:
    orders = lab_home / "tables" / "orders"
    write_deltalake(
        str(orders),
        pa.table({"order_id": [10, 11, 12], "customer_id": pa.array([1, 1, 3], pa.int32())}),
    )
    provider.register_table("acme.retail.orders", orders)
    joined = provider.sql(
        f"""
        WITH big AS (SELECT customer_id, count(*) AS n FROM acme.retail.orders GROUP BY 1)
        SELECT c.customer_name, big.n FROM {T} c JOIN big ON c.customer_id = big.customer_id
        ORDER BY big.n DESC
        """
    )
    assert joined.values.tolist() == [["Acme", 2], ["Initech", 1]]
    provider.sql(f"DELETE FROM {T} WHERE customer_id = 4")
    assert len(provider.sql(f"SELECT * FROM {T}")) == 3
    assert len(provider.sql(f"SELECT * FROM {T} VERSION AS OF 0")) == 4
    assert len(provider.sql(f"SELECT * FROM delta.`{customers}`")) == 3
    with pytest.raises(InvalidArgumentError, match="as of 7"):
        provider.sql(f"SELECT * FROM {T} VERSION AS OF 7")


def test_select_errors(provider: Provider, customers: Path, lab_home: Path) -> None:
    with pytest.raises(NotFoundError, match="not registered"):
        provider.sql("SELECT * FROM acme.retail.nope")
    with pytest.raises(NotFoundError):
        provider.sql("SELECT * FROM nope")
    other = lab_home / "tables" / "other"
    write_deltalake(str(other), customers_table())
    provider.register_table("other.retail.customers", other)
    with pytest.raises(InvalidArgumentError, match="ambiguous"):
        provider.sql("SELECT * FROM retail.customers")
    with pytest.raises(InvalidArgumentError, match="query failed") as info:
        provider.sql(f"SELECT no_such_column FROM {T}")
    assert "__sharelab" not in str(info.value)
    with pytest.raises(SqlParseError):
        provider.sql(f"SELECT * FROM {T} WHERE")


def test_audit_log_is_queryable(provider: Provider) -> None:
    provider.catalog.record_audit(
        [
            AuditEvent(action="queryTable", recipient="r", share="s", schema="x", table="t"),
            AuditEvent(action="listShares", recipient="r"),
            AuditEvent(action="queryTable", recipient="q", share="s", schema="x", table="t"),
        ]
    )
    frame = provider.sql(
        "SELECT recipient, count(*) AS n FROM system.access.audit "
        "WHERE action = 'queryTable' GROUP BY recipient ORDER BY recipient"
    )
    assert frame.values.tolist() == [["q", 1], ["r", 1]]
    assert (
        str(provider.sql("SELECT event_time FROM system.access.audit")["event_time"].dt.tz) == "UTC"
    )
    with pytest.raises(InvalidArgumentError, match="read-only"):
        provider.sql("DELETE FROM system.access.audit")


# -- writes --------------------------------------------------------------------------------------


def test_insert_values_cast_to_the_table_schema(provider: Provider, customers: Path) -> None:
    result = provider.sql(
        f"""
        INSERT INTO {T} VALUES
          (41, 'FutureTech', 'info@futuretech.jp', 'Japan', DATE '2024-03-01', 12.5,
           TIMESTAMP '2024-03-01 09:30:00'),
          (42, 'Quantum Analytics', 'hi@quantum.nl', 'Netherlands', '2024-03-02', 0, NULL)
        """
    )
    assert result.to_dict("records") == [{"num_affected_rows": 2, "num_inserted_rows": 2}]
    table = DeltaTable(str(customers))
    assert table.to_pyarrow_dataset().schema == SCHEMA
    data = rows(customers).set_index("customer_id")
    assert data.loc[41, "balance"] == Decimal("12.50")
    assert data.loc[41, "signup_date"] == dt.date(2024, 3, 1)
    assert data.loc[41, "updated_at"] == pd.Timestamp("2024-03-01 09:30", tz="UTC")
    assert pd.isna(data.loc[42, "updated_at"])

    provider.sql(f"INSERT INTO {T} (customer_id, email) VALUES (43, 'x@y.z')")
    assert rows(customers).set_index("customer_id").loc[43, "email"] == "x@y.z"
    provider.sql(f"INSERT INTO {T} SELECT * FROM {T} WHERE customer_id = 1")
    assert (rows(customers)["customer_id"] == 1).sum() == 2


def test_insert_errors_change_nothing(provider: Provider, customers: Path) -> None:
    before = version(customers)
    with pytest.raises(InvalidArgumentError, match="7 columns"):
        provider.sql(f"INSERT INTO {T} VALUES (1, 'x')")
    with pytest.raises(InvalidArgumentError, match="customer_id"):
        provider.sql(f"INSERT INTO {T} (customer_id) VALUES ('not a number')")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        provider.sql(f"INSERT INTO {T} (nope) VALUES (1)")
    with pytest.raises(NotFoundError):
        provider.sql("INSERT INTO acme.retail.nope VALUES (1)")
    assert version(customers) == before


def test_update_delete_and_their_errors(provider: Provider, customers: Path) -> None:
    out = provider.sql(
        f"UPDATE {T} SET EMAIL = 'new@acme.com', balance = balance * 2 WHERE Customer_ID = 1"
    )
    assert out["num_affected_rows"].tolist() == [1]
    data = rows(customers).set_index("customer_id")
    assert data.loc[1, "email"] == "new@acme.com"
    assert data.loc[1, "balance"] == Decimal("21.00")
    out = provider.sql(f"DELETE FROM {T} c WHERE c.country = 'US' AND c.balance < 1")
    assert out["num_affected_rows"].tolist() == [1]
    assert sorted(rows(customers)["customer_id"]) == [1, 2, 4]

    before = version(customers)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        provider.sql(f"UPDATE {T} SET nope = 1")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        provider.sql(f"DELETE FROM {T} WHERE nope = 1")
    with pytest.raises(InvalidArgumentError, match="subqueries"):
        provider.sql(f"DELETE FROM {T} WHERE customer_id IN (SELECT 1)")
    with pytest.raises(InvalidArgumentError, match="UPDATE failed|UPDATE of"):
        provider.sql(f"UPDATE {T} SET customer_id = 'abc'")
    assert version(customers) == before
    out = provider.sql(f"DELETE FROM {T}")
    assert out["num_affected_rows"].tolist() == [3]


def test_filters_on_strings_after_rewrites(provider: Provider, customers: Path) -> None:
    """UPDATE rewrites files with string_view columns; a later WHERE on a string still works."""
    provider.sql(f"UPDATE {T} SET balance = balance + 1 WHERE customer_id = 1")
    out = provider.sql(f"SELECT customer_id FROM {T} WHERE country = 'US' ORDER BY customer_id")
    expected = sorted(rows(customers).query("country == 'US'")["customer_id"])
    assert out["customer_id"].tolist() == expected and expected
    out = provider.sql(f"SELECT count(*) AS n FROM {T} WHERE email >= 'a'")
    assert out["n"].tolist() == [int((rows(customers)["email"] >= "a").sum())]


def test_merge_clauses(provider: Provider, customers: Path) -> None:
    out = provider.sql(
        f"""
        MERGE INTO {T} AS t
        USING (SELECT * FROM (VALUES (1, 'acme-new@x.com', 'US'), (2, NULL, 'FR'),
                                      (9, 'nine@x.com', 'DE')) AS v(id, email, country)) AS s
        ON t.customer_id = s.id
        WHEN MATCHED AND s.email IS NULL THEN DELETE
        WHEN MATCHED THEN UPDATE SET email = s.email, t.balance = t.balance + 1
        WHEN NOT MATCHED THEN INSERT (customer_id, email, country) VALUES (s.id, s.email, s.country)
        WHEN NOT MATCHED BY SOURCE AND t.country = 'JP' THEN DELETE
        """
    )
    assert out.to_dict("records") == [
        {
            "num_affected_rows": 4,
            "num_updated_rows": 1,
            "num_deleted_rows": 2,
            "num_inserted_rows": 1,
        }
    ]
    data = rows(customers).set_index("customer_id")
    assert sorted(data.index) == [1, 3, 9]
    assert data.loc[1, "email"] == "acme-new@x.com"
    assert data.loc[1, "balance"] == Decimal("11.50")
    assert data.loc[9, "country"] == "DE"

    # a table as the source with SET * / INSERT *
    copy = customers.parent / "copy"
    write_deltalake(str(copy), customers_table().slice(0, 2))
    provider.register_table("acme.retail.copy", copy)
    provider.sql(
        f"MERGE INTO acme.retail.copy USING {T} ON copy.customer_id = customers.customer_id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    assert sorted(rows(copy)["customer_id"]) == [1, 2, 3, 9]

    before = version(copy)
    with pytest.raises(InvalidArgumentError, match="missing"):
        provider.sql(
            "MERGE INTO acme.retail.copy t USING (SELECT 1 AS customer_id) s "
            "ON t.customer_id = s.customer_id WHEN NOT MATCHED THEN INSERT *"
        )
    with pytest.raises(InvalidArgumentError, match="qualify"):
        provider.sql(
            f"MERGE INTO acme.retail.copy t USING {T} s ON customer_id = customer_id "
            "WHEN MATCHED THEN DELETE"
        )
    assert version(copy) == before


def test_change_data_feed_lesson(provider: Provider, customers: Path) -> None:
    """Seed 004 lesson 2.4: enable CDF, insert, update, delete, then read table_changes."""
    provider.sql(f"ALTER TABLE {T} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    props = provider.sql(f"SHOW TBLPROPERTIES {T}").set_index("key")["value"]
    assert props["delta.enableChangeDataFeed"] == "true"
    cdf_on = version(customers)
    provider.sql(
        f"""
        INSERT INTO {T} (customer_id, customer_name, country) VALUES
          (41, 'FutureTech', 'Japan'), (42, 'Quantum Analytics', 'Netherlands'),
          (43, 'Smart Solutions', 'Brazil');
        UPDATE {T} SET email = 'newemail@acme.com' WHERE customer_id = 1;
        DELETE FROM {T} WHERE customer_id = 2;
        MERGE INTO {T} t USING (SELECT 3 AS customer_id, 'merged@x.com' AS email) s
          ON t.customer_id = s.customer_id WHEN MATCHED THEN UPDATE SET email = s.email
        """
    )
    assert list((customers / "_change_data").glob("*.parquet")), "no CDC files were written"
    history = provider.sql(f"DESCRIBE HISTORY {T}")
    assert history["operation"].tolist()[:5] == [
        "MERGE",
        "DELETE",
        "UPDATE",
        "WRITE",
        "SET TBLPROPERTIES",
    ]
    assert history["version"].tolist() == sorted(history["version"], reverse=True)
    assert len(provider.sql(f"DESCRIBE HISTORY {T} LIMIT 2")) == 2

    changes = provider.sql(
        f"SELECT _change_type, _commit_version, _commit_timestamp, customer_id, email "
        f"FROM table_changes('{T}', {cdf_on + 1}) ORDER BY _commit_version, customer_id, _change_type"
    )
    assert changes[["_change_type", "customer_id"]].values.tolist() == [
        ["insert", 41],
        ["insert", 42],
        ["insert", 43],
        ["update_postimage", 1],
        ["update_preimage", 1],
        ["delete", 2],
        ["update_postimage", 3],
        ["update_preimage", 3],
    ]
    assert str(changes["_commit_timestamp"].dt.tz) == "UTC"
    counts = provider.sql(
        f"""SELECT CASE WHEN _change_type LIKE 'update%' THEN 'update' ELSE _change_type END AS kind,
                   count(*) AS n
            FROM table_changes('{T}', {cdf_on + 2}, {cdf_on + 3}) GROUP BY 1 ORDER BY 1"""
    )
    assert counts.values.tolist() == [["delete", 1], ["update", 2]]
    api = provider.table_changes(T, cdf_on + 2, cdf_on + 2)
    assert api["_change_type"].tolist() == ["update_preimage", "update_postimage"]
    assert api["email"].tolist() == ["a@acme.com", "newemail@acme.com"]


def test_change_data_feed_errors(provider: Provider, customers: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="enableChangeDataFeed"):
        provider.sql(f"SELECT * FROM table_changes('{T}', 0)")
    with pytest.raises(InvalidArgumentError, match="after the latest version"):
        provider.sql(f"SELECT * FROM table_changes('{T}', 5)")
    with pytest.raises(InvalidArgumentError, match="table_changes takes"):
        provider.sql("SELECT * FROM table_changes(1)")
    with pytest.raises(NotFoundError):
        provider.table_changes("acme.retail.nope", 0)


def test_table_properties_and_description(provider: Provider, customers: Path) -> None:
    before = version(customers)
    with pytest.raises(InvalidArgumentError, match="cannot set properties"):
        provider.sql(f"ALTER TABLE {T} SET TBLPROPERTIES (delta.enableChangeDataFed = true)")
    assert version(customers) == before
    provider.sql(f"ALTER TABLE {T} SET TBLPROPERTIES ('owner' = 'data team')")
    assert DeltaTable(str(customers)).metadata().configuration["owner"] == "data team"
    described = provider.sql(f"DESCRIBE TABLE {T}")
    assert described[["col_name", "data_type"]].values.tolist() == [
        ["customer_id", "int"],
        ["customer_name", "string"],
        ["email", "string"],
        ["country", "string"],
        ["signup_date", "date"],
        ["balance", "decimal(10,2)"],
        ["updated_at", "timestamp"],
    ]


def test_python_data_api(provider: Provider, customers: Path) -> None:
    provider.set_tblproperties(T, {"delta.enableChangeDataFeed": True})
    start = version(customers) + 1
    provider.insert(T, [{"customer_id": 50, "customer_name": "Py", "country": "SE"}])
    provider.insert(T, pd.DataFrame({"customer_id": [51], "country": ["SE"]}))
    provider.insert(T, "VALUES (52, 'V', NULL, 'SE', NULL, NULL, NULL)")
    provider.update(T, {"country": "'Sweden'"}, where="country = 'SE'")
    provider.delete(T, "customer_id = 52")
    provider.merge(
        T,
        pd.DataFrame({"customer_id": [50, 60], "country": ["Norway", "Denmark"]}),
        on="t.customer_id = s.customer_id",
        clauses=[MergeClause("matched_update", None, {"country": "s.country"})],
        insert={"customer_id": "s.customer_id", "country": "s.country"},
    )
    data = rows(customers).set_index("customer_id")
    assert data.loc[50, "country"] == "Norway"
    assert data.loc[51, "country"] == "Sweden"
    assert data.loc[60, "country"] == "Denmark"
    assert 52 not in data.index
    assert set(provider.table_changes(T, start)["_change_type"]) == {
        "insert",
        "update_preimage",
        "update_postimage",
        "delete",
    }
    assert len(provider.history(T)) == version(customers) + 1
    assert provider.query(f"SELECT count(*) AS n FROM {T}")["n"].tolist() == [len(data)]


def test_timestamps_overwrite_and_paths(provider: Provider, customers: Path) -> None:
    first = provider.sql(f"DESCRIBE HISTORY {T}")["timestamp"].iloc[-1]
    provider.sql(f"DELETE FROM {T} WHERE customer_id > 1")
    as_of = (first + pd.Timedelta(milliseconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert len(provider.sql(f"SELECT * FROM {T} TIMESTAMP AS OF '{as_of}'")) == 4
    with pytest.raises(InvalidArgumentError, match="not a timestamp"):
        provider.sql(f"SELECT * FROM {T} TIMESTAMP AS OF 'last tuesday'")

    provider.sql(
        f"ALTER TABLE delta.`{customers}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    enabled_at = provider.sql(f"DESCRIBE HISTORY delta.`{customers}` LIMIT 1")["timestamp"].iloc[0]
    out = provider.sql(
        f"INSERT OVERWRITE TABLE {T} SELECT * FROM {T} VERSION AS OF 0 WHERE customer_id = 4"
    )
    assert out["num_inserted_rows"].tolist() == [1]
    assert rows(customers)["customer_id"].tolist() == [4]
    changes = provider.sql(
        f"SELECT _change_type, customer_id FROM table_changes('{T}', '{enabled_at.isoformat()}') "
        "ORDER BY _change_type, customer_id"
    )
    assert changes.values.tolist() == [["delete", 1], ["insert", 4]]
    assert provider.sql(f"SHOW TBLPROPERTIES delta.`{customers}`")["key"].tolist()[0] == (
        "delta.minReaderVersion"
    )


def test_use_catalog_and_schema(provider: Provider, customers: Path, lab_home: Path) -> None:
    other = lab_home / "tables" / "other"
    write_deltalake(str(other), customers_table().slice(0, 1))
    provider.register_table("globex.retail.customers", other)
    with pytest.raises(InvalidArgumentError, match="ambiguous"):
        provider.sql("SELECT * FROM customers")
    out = provider.sql_all(
        "USE CATALOG globex; USE SCHEMA retail; SELECT current_catalog() AS c, current_schema() AS s;"
        "SELECT count(*) AS n FROM customers; SELECT count(*) AS n FROM retail.customers; SHOW TABLES"
    )
    assert out[1]["status"].item() == "using globex.retail"
    assert out[2].values.tolist() == [["globex", "retail"]]
    assert out[3]["n"].item() == 1 and out[4]["n"].item() == 1
    assert out[5]["catalog"].tolist() == ["globex"]
    provider.sql("USE acme.retail")
    assert provider.sql("SELECT count(*) AS n FROM customers")["n"].item() == 4
    provider.sql("UPDATE customers SET email = 'x' WHERE customer_id = 1")
    assert rows(customers).loc[0, "email"] == "x"
    assert len(provider.sql(f"SELECT * FROM {T.replace('acme', 'globex')}")) == 1  # 3 parts win
    with pytest.raises(SqlParseError):
        provider.sql("USE CATALOG a.b")
