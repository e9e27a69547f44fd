"""SQL drives the real sharing server: activation link → profile → the official delta-sharing client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import delta_sharing
import pyarrow as pa
import requests
from deltalake import write_deltalake

from helpers.provider import Provider


def test_sql_topology_is_served_to_the_official_client(lab_home: Path, server_factory) -> None:
    location = lab_home / "data" / "shop" / "sales" / "orders"
    write_deltalake(
        str(location),
        pa.table(
            {
                "order_id": pa.array([1, 2, 3, 4], pa.int32()),
                "region": ["EU", "US", "EU", "APAC"],
                "amount": [10.0, 20.0, 30.0, 40.0],
            }
        ),
        partition_by=["region"],
    )
    server = server_factory(lab_home)
    provider = Provider(lab_home)
    provider.sql(
        f"""
        CREATE TABLE shop.sales.orders LOCATION '{location}';
        ALTER TABLE shop.sales.orders SET TBLPROPERTIES (delta.enableChangeDataFeed = true);
        CREATE SHARE regional COMMENT 'orders by region';
        ALTER SHARE regional ADD TABLE shop.sales.orders
          PARTITION (region = CURRENT_RECIPIENT().region) AS sales.my_orders WITH HISTORY;
        CREATE RECIPIENT eu_partner PROPERTIES ('region' = 'EU');
        GRANT SELECT ON SHARE regional TO RECIPIENT eu_partner;
        """
    )
    link = (
        provider.sql("DESCRIBE RECIPIENT eu_partner")
        .set_index("info_name")
        .loc["activation_link", "info_value"]
    )
    assert link.startswith(f"{server.url}/delta-sharing/activation/")

    response = requests.get(link, timeout=10)
    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["endpoint"].rstrip("/") == server.endpoint.rstrip("/")
    assert requests.get(link, timeout=10).status_code != 200  # exactly once
    path = lab_home / "eu_partner.share"
    path.write_text(json.dumps(profile))

    client = delta_sharing.SharingClient(str(path))
    tables = client.list_all_tables()
    assert [(t.share, t.schema, t.name) for t in tables] == [("regional", "sales", "my_orders")]
    url = f"{path}#regional.sales.my_orders"
    frame = delta_sharing.load_as_pandas(url)
    assert sorted(frame["order_id"]) == [1, 3]  # only the recipient's region

    # provider-side changes reach the recipient's change data feed
    first = int(provider.sql("DESCRIBE HISTORY shop.sales.orders")["version"].iloc[0]) + 1
    provider.sql("UPDATE shop.sales.orders SET amount = amount + 1 WHERE order_id = 1")
    provider.sql("DELETE FROM shop.sales.orders WHERE order_id = 3")
    changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=first)
    assert sorted(zip(changes["_change_type"], changes["order_id"], strict=True)) == [
        ("delete", 3),
        ("update_postimage", 1),
        ("update_preimage", 1),
    ]

    # the server writes audit events in small batches: give the last one a moment
    deadline = time.monotonic() + 10
    while True:
        audit = provider.sql(
            "SELECT DISTINCT action FROM system.access.audit WHERE recipient = 'eu_partner'"
        )
        if {"queryTable", "queryTableChanges"} <= set(
            audit["action"]
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {"queryTable", "queryTableChanges"} <= set(audit["action"])

    # revoking the grant cuts access at once
    provider.sql("REVOKE SELECT ON SHARE regional FROM RECIPIENT eu_partner")
    assert client.list_all_tables() == []
