"""The retail dataset: seed 003's tables and distributions, deterministic, coherent, no wall clock."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from helpers.catalog import open_catalog
from helpers.datagen import dataset_tables, generate
from helpers.datagen.retail import DEFAULT_START

# DATAGEN_TEST_SEED reruns the coherence checks on another seed
SEED = int(os.environ.get("DATAGEN_TEST_SEED", "11"))
DAYS = 28
START = date(2025, 6, 2)  # a Monday


def read_tables(root: Path) -> dict[str, pa.Table]:
    return {
        s.name: DeltaTable(str(root / s.schema / s.name)).to_pyarrow_table()
        for s in dataset_tables("retail")
    }


def sorted_table(t: pa.Table) -> pa.Table:
    cols = sorted(t.column_names)
    return t.select(cols).sort_by([(c, "ascending") for c in cols])


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("retail-home")
    summary = generate(
        "retail", home, scale="small", seed=SEED, days=DAYS, start_date=START, progress=False
    )
    tables = read_tables(summary.location)
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return {"home": home, "summary": summary, "tables": tables, "con": con}


def scalar(retail: dict, sql: str):
    return retail["con"].execute(sql).fetchall()[0][0]


def rows(retail: dict, sql: str) -> list[tuple]:
    return retail["con"].execute(sql).fetchall()


def test_tables_volumes_and_registration(retail: dict) -> None:
    counts = retail["summary"].rows()
    assert list(counts) == [
        "sales.stores",
        "sales.products",
        "sales.customers",
        "sales.promotions",
        "sales.orders",
        "sales.order_items",
        "sales.inventory_snapshots",
    ]
    assert counts["sales.stores"] == 10
    assert counts["sales.products"] == 200
    assert counts["sales.customers"] == 2_000
    # seed 003's small volume is ~4,000 orders per 14 days
    assert 7_500 < counts["sales.orders"] < 8_500
    assert counts["sales.inventory_snapshots"] == DAYS * 10 * 200
    catalog = open_catalog(retail["home"])
    names = {t.name for t in catalog.list_tables(catalog="retail")}
    assert names == {f"retail.sales.{s.name}" for s in dataset_tables("retail")}


def test_storage_types_partitions_and_cdf(retail: dict) -> None:
    root = retail["summary"].location
    for spec in dataset_tables("retail"):
        dt = DeltaTable(str(root / spec.schema / spec.name))
        assert list(dt.metadata().partition_columns) == list(spec.partition_by)
        assert dt.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
        log = (
            root / spec.schema / spec.name / "_delta_log" / "00000000000000000000.json"
        ).read_text()
        assert "timestamp_ntz" not in log
    t = retail["tables"]
    for name, col in [
        ("orders", "order_ts"),
        ("customers", "signup_ts"),
        ("inventory_snapshots", "snapshot_ts"),
    ]:
        assert t[name].schema.field(col).type == pa.timestamp("us", tz="UTC")
    assert {s.name: s.partition_by for s in dataset_tables("retail") if s.partition_by} == {
        "orders": ("order_month",),
        "order_items": ("order_month",),
        "inventory_snapshots": ("snapshot_month",),
    }


def test_month_partitions_follow_the_dates_one_file_a_month(tmp_path: Path) -> None:
    """Partitioned by ``'YYYY-MM'`` months (not days): a window over two months is two files a table."""
    summary = generate(
        "retail", tmp_path, days=10, start_date=date(2025, 1, 27), progress=False, register=False
    )
    con = duckdb.connect()
    for table, day, month in [
        ("orders", "order_date", "order_month"),
        ("order_items", "order_date", "order_month"),
        ("inventory_snapshots", "snapshot_date", "snapshot_month"),
    ]:
        dt = DeltaTable(str(summary.location / "sales" / table))
        assert list(dt.metadata().partition_columns) == [month]
        assert len(dt.file_uris()) == 2, table  # January and February, whatever the days
        con.register(table, dt.to_pyarrow_table())
        assert con.execute(
            f"SELECT count(*) FILTER (WHERE {month} <> strftime({day}, '%Y-%m')), "
            f"list(DISTINCT {month} ORDER BY {month}) FROM {table}"
        ).fetchall()[0] == (0, ["2025-01", "2025-02"]), table


def test_keys_and_foreign_keys(retail: dict) -> None:
    for table, key in [
        ("stores", "store_id"),
        ("products", "product_id"),
        ("products", "sku"),
        ("customers", "customer_id"),
        ("promotions", "promo_id"),
        ("promotions", "product_id"),  # at most one promotion per product
        ("orders", "order_id"),
    ]:
        assert scalar(retail, f"SELECT count(*) - count(DISTINCT {key}) FROM {table}") == 0, key
    assert (
        scalar(retail, "SELECT count(*) - count(DISTINCT (order_id, line_number)) FROM order_items")
        == 0
    )
    for child, col, parent, pk in [
        ("orders", "store_id", "stores", "store_id"),
        ("orders", "customer_id", "customers", "customer_id"),
        ("order_items", "order_id", "orders", "order_id"),
        ("order_items", "product_id", "products", "product_id"),
        ("promotions", "product_id", "products", "product_id"),
        ("inventory_snapshots", "store_id", "stores", "store_id"),
        ("inventory_snapshots", "product_id", "products", "product_id"),
    ]:
        dangling = scalar(
            retail,
            f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON c.{col} = p.{pk} WHERE p.{pk} IS NULL",
        )
        assert dangling == 0, (child, col)
    # every order has items, numbered 1..k, and lists each product once
    assert (
        scalar(
            retail,
            "SELECT count(*) FROM orders o WHERE NOT EXISTS "
            "(SELECT 1 FROM order_items i WHERE i.order_id = o.order_id)",
        )
        == 0
    )
    assert (
        scalar(
            retail,
            "SELECT count(*) FROM (SELECT order_id, count(*) n, max(line_number) m, min(line_number) lo, "
            "count(DISTINCT product_id) p FROM order_items GROUP BY 1) WHERE n <> m OR lo <> 1 OR p <> n OR n > 8",
        )
        == 0
    )
    assert (
        scalar(
            retail,
            "SELECT count(*) FROM order_items i JOIN orders o USING (order_id) WHERE i.order_date <> o.order_date",
        )
        == 0
    )


def test_window_and_no_wall_clock(retail: dict) -> None:
    lo, hi = rows(retail, "SELECT min(order_ts), max(order_ts) FROM orders")[0]
    assert lo.date() >= START and (hi.date() - START).days == DAYS - 1
    assert (
        scalar(retail, "SELECT count(*) FROM orders WHERE order_date <> CAST(order_ts AS DATE)")
        == 0
    )
    # customers signed up 30 to 1460 days before the start date (seed 003 used now())
    first, last = rows(retail, "SELECT min(signup_ts), max(signup_ts) FROM customers")[0]
    assert (START - last.date()).days >= 29 and (START - first.date()).days <= 1461
    assert scalar(retail, "SELECT max(opened_date) FROM stores") <= START
    promo = rows(
        retail,
        "SELECT min(start_date), max(end_date), max(date_diff('day', start_date, end_date)) FROM promotions",
    )[0]
    assert promo[0] >= START and (promo[1] - START).days <= DAYS - 1 and promo[2] <= 13


def test_diurnal_and_weekend_rhythm(retail: dict) -> None:
    by_hour = dict(rows(retail, "SELECT hour(order_ts), count(*) FROM orders GROUP BY 1"))
    assert len(by_hour) == 24
    night = (by_hour[2] + by_hour[3] + by_hour[4]) / 3
    assert by_hour[12] > 1.8 * night and by_hour[18] > 1.8 * night
    assert by_hour[12] > by_hour[15] and by_hour[18] > by_hour[15]
    weekend, weekday = rows(
        retail,
        "SELECT avg(n) FILTER (WHERE dow IN (0, 6)), avg(n) FILTER (WHERE dow NOT IN (0, 6)) "
        "FROM (SELECT dayofweek(order_ts) dow, order_date, count(*) n FROM orders GROUP BY ALL)",
    )[0]
    assert 1.05 < weekend / weekday < 1.3


def test_zipf_like_popularity_and_segments(retail: dict) -> None:
    shares = [
        r[0]
        for r in rows(
            retail, "SELECT count(*) n FROM order_items GROUP BY product_id ORDER BY n DESC"
        )
    ]
    total = sum(shares)
    # the top 10% of products make far more than 10% of the lines
    assert sum(shares[:20]) / total > 0.5
    assert shares[0] > 10 * shares[len(shares) // 2]
    seg = dict(rows(retail, "SELECT segment, count(*) FROM customers GROUP BY 1"))
    assert seg["casual"] > seg["loyal"] > seg["premium"] and seg["bargain"] > seg["premium"]
    pay = dict(rows(retail, "SELECT payment_type, count(*) FROM orders GROUP BY 1"))
    assert pay["card"] > 3 * pay["cash"]
    with_discount = scalar(retail, "SELECT avg((discount_pct > 0)::INT) FROM orders")
    assert 0.5 < with_discount < 0.65
    assert scalar(retail, "SELECT max(discount_pct) FROM orders") <= 0.25


def test_promotions_are_applied_to_prices(retail: dict) -> None:
    bad = scalar(
        retail,
        """
        SELECT count(*) FROM order_items i
        JOIN orders o USING (order_id) JOIN products p USING (product_id)
        LEFT JOIN promotions pr ON pr.product_id = i.product_id
             AND o.order_date BETWEEN pr.start_date AND pr.end_date
        WHERE abs(i.unit_price
                  - round(p.base_price * (1 - o.discount_pct) * (1 - coalesce(pr.discount_pct, 0)), 2)) > 0.0101
           OR abs(i.extended_price - i.unit_price * i.qty) > 0.001
        """,
    )
    assert bad == 0
    promoted = scalar(
        retail,
        "SELECT count(*) FROM order_items i JOIN orders o USING (order_id) JOIN promotions pr "
        "ON pr.product_id = i.product_id AND o.order_date BETWEEN pr.start_date AND pr.end_date",
    )
    assert promoted > 100
    share = scalar(retail, "SELECT count(*) FROM promotions") / 200
    assert 0.15 < share < 0.35
    assert scalar(retail, "SELECT min(discount_pct), max(discount_pct) FROM promotions") >= 0.05


def test_inventory_snapshots_move_with_the_sales(retail: dict) -> None:
    assert (
        scalar(
            retail,
            "SELECT count(*) FROM inventory_snapshots WHERE hour(snapshot_ts) <> 6 "
            "OR minute(snapshot_ts) <> 0 OR snapshot_date <> CAST(snapshot_ts AS DATE) "
            "OR on_hand < 0 OR on_order < 0 OR safety_stock < 5 "
            "OR reorder_qty <> CASE WHEN on_hand + on_order < safety_stock "
            "  THEN 3 * safety_stock - on_hand - on_order ELSE 0 END",
        )
        == 0
    )
    assert (
        scalar(
            retail,
            "SELECT count(*) FROM (SELECT snapshot_date, store_id, product_id, count(*) n "
            "FROM inventory_snapshots GROUP BY ALL) WHERE n <> 1",
        )
        == 0
    )
    # stock at d+1 = stock at d + delivery - units sold between the two 06:00 snapshots
    bad, checked = rows(
        retail,
        """
        WITH s AS (
          SELECT CAST(o.order_ts - INTERVAL 6 HOUR AS DATE) w, o.store_id, i.product_id,
                 sum(i.qty) units
          FROM order_items i JOIN orders o USING (order_id) GROUP BY ALL)
        SELECT count(*) FILTER (WHERE b.on_hand <> greatest(0, a.on_hand + a.on_order - coalesce(s.units, 0))
                                   OR b.on_order <> a.reorder_qty OR b.safety_stock <> a.safety_stock),
               count(*)
        FROM inventory_snapshots a
        JOIN inventory_snapshots b ON b.store_id = a.store_id AND b.product_id = a.product_id
             AND b.snapshot_date = a.snapshot_date + 1
        LEFT JOIN s ON s.w = a.snapshot_date AND s.store_id = a.store_id AND s.product_id = a.product_id
        """,
    )[0]
    assert bad == 0 and checked == (DAYS - 1) * 10 * 200
    # the sales really drain stock: popular products get reordered, and some run out
    assert scalar(retail, "SELECT count(*) FROM inventory_snapshots WHERE reorder_qty > 0") > 100
    assert scalar(retail, "SELECT count(*) FROM inventory_snapshots WHERE on_order > 0") > 100
    first, last = rows(
        retail,
        "SELECT sum(on_hand) FILTER (WHERE snapshot_date = (SELECT min(snapshot_date) FROM inventory_snapshots)), "
        "sum(on_hand) FILTER (WHERE snapshot_date = (SELECT max(snapshot_date) FROM inventory_snapshots)) "
        "FROM inventory_snapshots",
    )[0]
    assert first != last


def test_determinism_and_seed_sensitivity(retail: dict, tmp_path: Path) -> None:
    again = generate(
        "retail",
        tmp_path / "a",
        seed=SEED,
        days=DAYS,
        start_date=START,
        progress=False,
        register=False,
    )
    other = generate(
        "retail",
        tmp_path / "b",
        seed=SEED + 1,
        days=DAYS,
        start_date=START,
        progress=False,
        register=False,
    )
    first, second, third = (
        retail["tables"],
        read_tables(again.location),
        read_tables(other.location),
    )
    for name in first:
        assert sorted_table(first[name]).equals(sorted_table(second[name])), name
        assert not sorted_table(first[name]).equals(sorted_table(third[name])), name


def test_default_start_date_is_fixed(tmp_path: Path) -> None:
    summary = generate("retail", tmp_path, days=1, progress=False, register=False)
    assert summary.start_date == DEFAULT_START
    orders = DeltaTable(str(summary.location / "sales" / "orders")).to_pyarrow_table()
    assert {d for d in orders.column("order_date").to_pylist()} == {DEFAULT_START}


def test_streamed_table_written_in_several_commits_has_the_same_rows(
    retail: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.datagen import common

    monkeypatch.setattr(common, "STREAM_COMMIT_ROWS", 5_000)  # 2,000 rows a day: 3 days a commit
    summary = generate(
        "retail", tmp_path, seed=SEED, days=DAYS, start_date=START, progress=False, register=False
    )
    dt = DeltaTable(str(summary.location / "sales" / "inventory_snapshots"))
    assert dt.version() == -(-DAYS // 3) - 1
    assert dt.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    assert list(dt.metadata().partition_columns) == ["snapshot_month"]
    assert sorted_table(dt.to_pyarrow_table()).equals(
        sorted_table(retail["tables"]["inventory_snapshots"])
    )
    # the fixture's (default) run wrote it in one commit
    fixture_dt = DeltaTable(str(retail["summary"].location / "sales" / "inventory_snapshots"))
    assert fixture_dt.version() == 0
