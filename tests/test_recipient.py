"""helpers.recipient against the real server on a loopback port, driven through the official client.

The provider side is set up with the catalog and deltalake (as a provider would); everything the tests
check goes through ``helpers.recipient``, i.e. a profile file and the open protocol.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import delta_sharing
import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import requests
from deltalake import DeltaTable, write_deltalake

from helpers import recipient
from helpers.catalog import Catalog
from helpers.exceptions import AlreadyExistsError, InvalidArgumentError, NotFoundError, TokenError
from helpers.profiles import profile_dict
from helpers.profiles import write_profile as catalog_write_profile
from tests.support import share_crm_tables


def _customers(ids: list[int], tier: str = "BRONZE") -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "name": pa.array([f"c{i}" for i in ids]),
            "tier": pa.array([tier] * len(ids)),
            "signup": pa.array(
                [pd.Timestamp("2025-01-01", tz="UTC")] * len(ids), pa.timestamp("us", tz="UTC")
            ),
        }
    )


@pytest.fixture
def shared(lab_home: Path, server_factory) -> dict:
    """Two shares (one with history), a recipient granted one of them, its profile, the running server."""
    data = lab_home / "data"
    cust = data / "crm" / "customers"
    orders = data / "crm" / "orders"
    secret = data / "crm" / "secret"
    write_deltalake(
        str(cust), _customers([1, 2, 3, 4]), configuration={"delta.enableChangeDataFeed": "true"}
    )
    write_deltalake(str(orders), pa.table({"order_id": [10, 11], "customer_id": [1, 2]}))
    write_deltalake(str(secret), pa.table({"x": [1]}))
    cat = Catalog(lab_home / "catalog.db")
    cat.register_table("crm.sales.customers", cust)
    cat.register_table("crm.sales.orders", orders)
    cat.register_table("crm.internal.secret", secret)
    share_crm_tables(cat)
    server = server_factory(lab_home)
    profile = lab_home / "profiles" / "analyst.share"
    catalog_write_profile(profile, profile_dict(server.endpoint, cat.issue_token("analyst")))
    return {
        "catalog": cat,
        "server": server,
        "profile": profile,
        "customers": cust,
        "home": lab_home,
    }


def test_load_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        recipient.load_profile(tmp_path / "missing.share")
    bad = tmp_path / "bad.share"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="not JSON"):
        recipient.load_profile(bad)
    bad.write_text(json.dumps({"shareCredentialsVersion": 1, "endpoint": "http://x/"}))
    with pytest.raises(InvalidArgumentError, match="bearerToken"):
        recipient.load_profile(bad)


def test_activate_writes_0600_once(shared: dict, tmp_path: Path) -> None:
    code = shared["catalog"].create_activation("analyst")
    link = f"{shared['server'].url}/delta-sharing/activation/{code}"
    out = tmp_path / "me.share"
    out.write_text("keep me")
    # An existing target is refused before the link is used: the link still works afterwards.
    with pytest.raises(AlreadyExistsError, match="NOT used"):
        recipient.activate(link, out)
    assert out.read_text() == "keep me"
    out.unlink()
    written = recipient.activate(link, out)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    profile = recipient.load_profile(written)
    assert profile.endpoint.rstrip("/") == shared["server"].endpoint.rstrip("/")
    assert sorted(recipient.list_tables(written)["share"].unique()) == ["crm_share", "orders_share"]
    # Second use of the same link: refused, nothing written.
    with pytest.raises(TokenError, match="work once"):
        recipient.activate(link, tmp_path / "again.share")
    assert not (tmp_path / "again.share").exists()
    with pytest.raises(InvalidArgumentError):
        recipient.activate("not a url", tmp_path / "x.share")


def test_list_tables_and_load(shared: dict) -> None:
    frame = recipient.list_tables(shared["profile"])
    assert frame[["share", "schema", "table"]].values.tolist() == [
        ["crm_share", "sales", "customers"],
        ["orders_share", "sales", "orders"],
    ]
    rows = recipient.load(shared["profile"], "crm_share.sales.customers")
    assert sorted(rows["customer_id"]) == [1, 2, 3, 4]
    assert recipient.table_version(shared["profile"], "crm_share.sales.customers") == 0
    with pytest.raises(InvalidArgumentError, match="share.schema.table"):
        recipient.load(shared["profile"], "customers")


def test_mount_is_read_only_and_refreshes(shared: dict) -> None:
    con = recipient.mount(shared["profile"])
    names = con.sql(
        "SELECT database_name, schema_name, table_name FROM duckdb_tables() "
        "WHERE table_name <> '__sharelab_mount' ORDER BY ALL"
    ).fetchall()
    assert names == [("crm_share", "sales", "customers"), ("orders_share", "sales", "orders")]
    joined = con.sql(
        "SELECT count(*) FROM crm_share.sales.customers c "
        "JOIN orders_share.sales.orders o USING (customer_id)"
    ).fetchall()
    assert joined == [(2,)]
    for statement in (
        "INSERT INTO crm_share.sales.customers (customer_id) VALUES (99)",
        "DELETE FROM orders_share.sales.orders",
        "DROP TABLE crm_share.sales.customers",
    ):
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute(statement)
    assert con.execute("SELECT count(*) FROM crm_share.sales.customers").fetchall() == [(4,)]
    mounted = recipient.mounted_tables(con)
    assert mounted[["share", "rows", "version"]].values.tolist() == [
        ["crm_share", 4, 0],
        ["orders_share", 2, 0],
    ]
    # The provider appends; mounting again refreshes the share in place.
    write_deltalake(str(shared["customers"]), _customers([5]), mode="append")
    recipient.mount(shared["profile"], con, shares=["crm_share"])
    assert con.execute("SELECT count(*) FROM crm_share.sales.customers").fetchall() == [(5,)]
    with pytest.raises(NotFoundError):
        recipient.mount(shared["profile"], con, shares=["secret_share"])
    other = duckdb.connect()
    other.execute("ATTACH ':memory:' AS crm_share")
    with pytest.raises(InvalidArgumentError, match="not a share mount"):
        recipient.mount(shared["profile"], other)


def test_ungranted_share_is_invisible(shared: dict) -> None:
    with pytest.raises(requests.HTTPError) as info:
        recipient.load(shared["profile"], "secret_share.internal.secret")
    assert info.value.response.status_code in (403, 404)


def test_cdf_scd1_scd2_round_trip(shared: dict, tmp_path: Path) -> None:
    profile, name, cust = shared["profile"], "crm_share.sales.customers", str(shared["customers"])
    start = recipient.table_version(profile, name)
    copy1, copy2 = tmp_path / "scd1", tmp_path / "scd2"
    snapshot = recipient.load(profile, name, version=start)
    first = recipient.changes(profile, name, start, start)

    table_id = delta_sharing.get_table_metadata(recipient.table_url(profile, *name.split("."))).id
    assert table_id
    recipient.snapshot_copy(copy1, snapshot, "customer_id", start, source_id=table_id)
    recipient.snapshot_copy(
        copy2,
        snapshot,
        "customer_id",
        start,
        scd2=True,
        valid_from=first["_commit_timestamp"].min(),
    )
    with pytest.raises(AlreadyExistsError):
        recipient.snapshot_copy(copy1, snapshot, "customer_id", start)

    # Provider: insert, update, delete, merge — real deltalake commits with cdc files.
    write_deltalake(cust, _customers([5, 6]), mode="append")
    dt = DeltaTable(cust)
    dt.update(updates={"tier": "'GOLD'"}, predicate="customer_id = 1")
    DeltaTable(cust).delete("customer_id = 2")
    (
        DeltaTable(cust)
        .merge(
            _customers([3, 7], tier="SILVER"),
            predicate="t.customer_id = s.customer_id",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )

    feed = recipient.changes(profile, name, start + 1)
    assert feed["_commit_version"].is_monotonic_increasing
    assert isinstance(feed["_commit_timestamp"].dtype, pd.DatetimeTZDtype)
    assert set(feed["_change_type"]) == {"insert", "update_preimage", "update_postimage", "delete"}

    r1 = recipient.apply_scd1(copy1, feed, "customer_id")
    assert recipient.copy_source_id(copy1) == table_id  # kept across later commits
    assert (
        recipient.copy_source_id(copy2) is None and recipient.copy_source_id(tmp_path / "x") is None
    )
    assert r1["deleted"] == 1 and r1["upserted"] == 5  # 5, 6, 7 inserted; 1, 3 updated
    now = recipient.load(profile, name)
    assert recipient.same_rows(recipient.read_copy(copy1), now, "customer_id")
    # Applying the same feed again changes nothing (the copy remembers the applied version).
    assert recipient.apply_scd1(copy1, feed, "customer_id")["upserted"] == 0
    assert recipient.same_rows(recipient.read_copy(copy1), now, "customer_id")

    r2 = recipient.apply_scd2(copy2, feed, "customer_id")
    assert r2["closed"] == 3  # customers 1 and 3 updated, 2 deleted
    type2 = recipient.read_copy(copy2)
    current = type2[type2["is_current"]].drop(columns=list(recipient.SCD2_COLUMNS))
    assert recipient.same_rows(current, now, "customer_id")
    one = type2[type2["customer_id"] == 1].sort_values("start_version")
    assert one["tier"].tolist() == ["BRONZE", "GOLD"]
    assert one["is_current"].tolist() == [False, True]
    assert one["valid_to"].iloc[0] == one["valid_from"].iloc[1]  # closed when the new row opened
    assert not type2[type2["customer_id"] == 2]["is_current"].any()
    assert recipient.apply_scd2(copy2, feed, "customer_id")["inserted"] == 0
    assert recipient.applied_version(copy2, "customer_id") == recipient.table_version(profile, name)


def test_changes_in_both_formats_agree(shared: dict) -> None:
    cust = str(shared["customers"])
    DeltaTable(cust).update(updates={"tier": "'GOLD'"}, predicate="customer_id = 4")
    parquet = recipient.changes(
        shared["profile"], "crm_share.sales.customers", 1, use_delta_format=False
    )
    delta = recipient.changes(
        shared["profile"], "crm_share.sales.customers", 1, use_delta_format=True
    )
    cols = ["customer_id", "tier", "_change_type", "_commit_version"]
    key = ["_commit_version", "_change_type", "customer_id"]
    assert (
        parquet[cols]
        .sort_values(key, ignore_index=True)
        .equals(delta[cols].sort_values(key, ignore_index=True))
    )
    # Whole-second precision on the delta path, milliseconds on parquet: compare to the second.
    assert (
        parquet["_commit_timestamp"].dt.floor("s") == delta["_commit_timestamp"].dt.floor("s")
    ).all()


def test_scd_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="change data feed"):
        recipient.apply_scd1(tmp_path / "x", pd.DataFrame({"id": [1]}), "id")
    with pytest.raises(NotFoundError, match="snapshot_copy"):
        recipient.apply_scd2(
            tmp_path / "x",
            pd.DataFrame(
                {
                    "id": [1],
                    "_change_type": ["insert"],
                    "_commit_version": [1],
                    "_commit_timestamp": [0],
                }
            ),
            "id",
        )
    with pytest.raises(InvalidArgumentError, match="valid_from"):
        recipient.snapshot_copy(tmp_path / "y", pd.DataFrame({"id": [1]}), "id", 0, scd2=True)


def test_checkpoint(tmp_path: Path) -> None:
    cp = tmp_path / "cp" / "checkpoint.json"
    assert recipient.remembered_version(cp, "a.b.c") is None
    assert recipient.remember_versions(cp, {"a.b.c": 3}) == {"a.b.c": 3}
    assert recipient.remember_versions(cp, {"a.b.c": 5, "a.b.d": 1}) == {"a.b.c": 3, "a.b.d": 1}
    assert recipient.remember_versions(cp, {"a.b.c": 5}, overwrite=True)["a.b.c"] == 5
    cp.write_text("[]")
    with pytest.raises(InvalidArgumentError, match="delete it"):
        recipient.remembered_version(cp, "a.b.c")
