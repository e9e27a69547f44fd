"""Audit: every request the server answers is a row of the catalog's audit table."""

from __future__ import annotations

import json
import time

import delta_sharing
import pandas as pd
import requests

from .conftest import SharingLab


def _rows_for(
    lab: SharingLab, recipient: str, *statuses: int, timeout: float = 10.0
) -> pd.DataFrame:
    """The audit rows of ``recipient`` once rows with every status in ``statuses`` arrived.

    The server writes audit events in batches on a background thread, so the last requests of a test may
    need a moment to land.
    """
    deadline = time.monotonic() + timeout
    while True:
        frame = lab.catalog.audit_frame()
        rows = frame[frame["recipient"] == recipient]
        seen = set(rows["status_code"].dropna().astype(int))
        if set(statuses) <= seen or time.monotonic() > deadline:
            return rows


def test_audit_rows_for_reads(lab: SharingLab) -> None:
    name = lab.unique("audited")
    lab.add_recipient(name, shares=("retail_share",))
    client = delta_sharing.SharingClient(str(lab.profiles[name]))
    client.list_shares()
    url = lab.url(name, "retail_share", "core", "sales")
    df = delta_sharing.load_as_pandas(url, use_delta_format=False)
    assert len(df) == 46
    delta_sharing.get_table_version(url)
    hint = json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": "region", "valueType": "string"},
                {"op": "literal", "value": "emea", "valueType": "string"},
            ],
        }
    )
    delta_sharing.load_as_pandas(url, jsonPredicateHints=hint, limit=2, use_delta_format=False)
    delta_sharing.load_table_changes_as_pandas(
        lab.url(name, "retail_share", "core", "events"), starting_version=1, ending_version=2
    )
    assert (
        lab.get(
            "/shares/retail_share/schemas/core/tables/nope/metadata", recipient=name
        ).status_code
        == 404
    )
    assert (
        lab.post(
            "/shares/retail_share/schemas/core/tables/sales/query", {"version": -1}, recipient=name
        ).status_code
        == 400
    )

    rows = _rows_for(lab, name, 200, 400, 404)
    expected_columns = {
        "event_time",
        "recipient",
        "share",
        "schema",
        "table",
        "action",
        "version",
        "start_version",
        "end_version",
        "num_files",
        "has_predicate_hints",
        "has_limit_hint",
        "status_code",
        "user_agent",
        "client_address",
        "duration_ms",
        "response_format",
    }
    assert expected_columns <= set(rows.columns)
    actions = set(rows["action"])
    assert {"listShares", "queryTable", "getTableVersion", "queryTableChanges"} <= actions

    queries = rows[(rows["action"] == "queryTable") & (rows["status_code"] == 200)]
    full = queries[~queries["has_predicate_hints"].astype(bool)]
    assert len(full) >= 1
    assert int(full.iloc[0]["num_files"]) == 9
    assert full.iloc[0]["share"] == "retail_share" and full.iloc[0]["table"] == "sales"
    assert full.iloc[0]["schema"] == "core"
    hinted = queries[queries["has_predicate_hints"].astype(bool)]
    assert len(hinted) == 1
    assert bool(hinted.iloc[0]["has_limit_hint"]) and int(hinted.iloc[0]["num_files"]) <= 3
    assert str(hinted.iloc[0]["response_format"]) == "parquet"

    cdf = rows[rows["action"] == "queryTableChanges"].iloc[0]
    assert int(cdf["start_version"]) == 1 and int(cdf["end_version"]) == 2

    failed = rows[rows["status_code"].isin([400, 404])]
    assert {400, 404} <= set(failed["status_code"].astype(int))
    assert rows["user_agent"].astype(str).str.contains("Delta-Sharing-Python").any()
    assert set(rows["client_address"].dropna()) == {"127.0.0.1"}
    assert (rows["duration_ms"].dropna() >= 0).all()
    assert rows["event_time"].notna().all()


def test_audit_rows_for_downloads_and_auth_failures(lab: SharingLab) -> None:
    name = lab.unique("downloader")
    token = lab.add_recipient(name, shares=("retail_share",))
    files = lab.query("retail_share", "core", "sales", recipient=name).files
    for f in files[:3]:
        assert requests.get(f["url"], timeout=10).status_code == 200
    before = len(lab.catalog.audit_frame())
    lab.catalog.revoke_tokens(name)
    assert lab.get("/shares", token=token).status_code == 401
    deadline = time.monotonic() + 10
    while True:
        rows = _rows_for(lab, name, 200)
        downloads = rows[rows["action"] == "downloadFile"]
        if len(downloads) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    downloads = rows[rows["action"] == "downloadFile"]
    assert len(downloads) >= 3
    assert set(downloads["table"]) == {"sales"} and set(downloads["status_code"].astype(int)) == {
        200
    }
    # The 401 is recorded too, under the recipient whose revoked token it was (issue 13).
    deadline = time.monotonic() + 10
    while True:
        frame = lab.catalog.audit_frame()
        refused = frame[(frame["status_code"] == 401) & (frame["recipient"] == name)]
        if len(refused) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(frame) > before and len(refused) == 1
