"""The lean loader (:func:`helpers.recipient.fast_load`) against a real server: the same rows and types as
the official client, partition columns included, with one ``/query`` and one GET per file."""

from __future__ import annotations

import json
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
from deltalake import write_deltalake

from helpers.catalog import open_catalog
from helpers.provider import Provider
from helpers.recipient import fast_load, fast_load_arrow
from tests.support import start_server, stop_server


@pytest.fixture
def shared(lab_home: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    table = tmp_path / "orders"
    for n in range(3):
        frame = pd.DataFrame(
            {
                "id": range(n * 100, (n + 1) * 100),
                "amount": [float(i) / 3 for i in range(100)],
                "region": ["eu" if i % 2 else "us" for i in range(100)],
            }
        )
        write_deltalake(str(table), frame, partition_by=["region"], mode="append")
    Provider(lab_home).sql(
        f"CREATE TABLE shop.sales.orders LOCATION '{table}'; CREATE SHARE s; "
        "ALTER SHARE s ADD TABLE shop.sales.orders WITH HISTORY; CREATE RECIPIENT r; GRANT SELECT ON SHARE s TO RECIPIENT r"
    )
    token = open_catalog(lab_home).issue_token("r").token
    server = start_server(lab_home)
    profile = tmp_path / "r.share"
    profile.write_text(
        json.dumps(
            {"shareCredentialsVersion": 1, "endpoint": server.endpoint, "bearerToken": token}
        )
    )
    yield f"{profile}#s.sales.orders"
    stop_server(server)


def test_fast_load_equals_the_official_client(shared: str) -> None:
    ours = fast_load(shared).sort_values("id", ignore_index=True)
    theirs = delta_sharing.load_as_pandas(shared).sort_values("id", ignore_index=True)
    assert list(ours.columns) == list(theirs.columns) == ["id", "amount", "region"]
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    assert len(ours) == 300 and set(ours["region"]) == {"eu", "us"}
    old = fast_load_arrow(shared, version=0)
    assert old.num_rows == 100


def test_fast_load_bad_url_is_a_clear_error(shared: str) -> None:
    with pytest.raises(ValueError, match="<profile file>#<share>.<schema>.<table>"):
        fast_load(shared.split("#")[0])


def test_mount_with_the_lean_loader(shared: str) -> None:
    from helpers.recipient import mount, mounted_tables

    con = mount(shared.split("#")[0], fast=True)
    assert con.execute("SELECT count(*), sum(id) FROM s.sales.orders").fetchone() == (
        300,
        sum(range(300)),
    )
    assert mounted_tables(con)["rows"].tolist() == [300]
