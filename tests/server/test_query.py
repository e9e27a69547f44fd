"""Snapshot reads: ``load_as_pandas`` in every format, time travel, limit, version, metadata, protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import delta_sharing
import pandas as pd
import pyarrow as pa
import pytest
import requests
from deltalake import DeltaTable

from .conftest import BASE_TS, Response, SharingLab, iso_ms

SALES_COLUMNS = ["id", "region", "amount", "name", "ts", "day"]
FORMATS = [None, False, True]


def _norm(value: Any) -> Any:
    """One cell as a comparable Python value (NaN/None/NaT unified, timestamps in UTC, dates as ISO)."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return (
            value.tz_convert("UTC").isoformat()
            if value.tzinfo
            else value.tz_localize("UTC").isoformat()
        )
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def rows(df: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    """The frame's rows as sorted tuples of normalized values."""
    out = [tuple(_norm(v) for v in rec) for rec in df[columns].itertuples(index=False, name=None)]
    return sorted(out, key=lambda r: tuple((x is None, str(x)) for x in r))


def local_rows(
    lab: SharingLab, version: int | None = None, columns: list[str] = SALES_COLUMNS
) -> list:
    dt = DeltaTable(str(lab.tables["sales"]), version=version)
    return rows(dt.to_pandas(), columns)


@pytest.mark.parametrize("use_delta_format", FORMATS)
def test_load_as_pandas_matches_local_read(lab: SharingLab, use_delta_format: bool | None) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    df = delta_sharing.load_as_pandas(url, use_delta_format=use_delta_format)
    assert list(df.columns) == SALES_COLUMNS
    assert len(df) == 46
    assert rows(df, SALES_COLUMNS) == local_rows(lab)
    # The NULL partition value comes back as a missing value, not the string "null".
    assert df["region"].isna().sum() == 3


@pytest.mark.parametrize("use_delta_format", FORMATS)
def test_time_travel_by_version(lab: SharingLab, use_delta_format: bool | None) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    for version, expected in ((0, 30), (1, 42), (2, 44)):
        df = delta_sharing.load_as_pandas(url, version=version, use_delta_format=use_delta_format)
        assert len(df) == expected
        assert rows(df, SALES_COLUMNS) == local_rows(lab, version)


@pytest.mark.parametrize("use_delta_format", FORMATS)
def test_time_travel_by_timestamp(
    lab: SharingLab, sales_ts: dict[int, int], use_delta_format: bool | None
) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    # Exactly at the commit of v1, and just before the commit of v2: both are the v1 snapshot.
    for stamp in (sales_ts[1], sales_ts[2] - 1):
        df = delta_sharing.load_as_pandas(
            url, timestamp=iso_ms(stamp), use_delta_format=use_delta_format
        )
        assert rows(df, SALES_COLUMNS) == local_rows(lab, 1)


def test_time_travel_headers_and_file_versions(lab: SharingLab, sales_ts: dict[int, int]) -> None:
    resp = lab.query("retail_share", "core", "sales", {"version": 1})
    assert resp.version == 1
    assert len(resp.files) == 7
    assert resp.of("metaData")[0].get("version", 1) == 1
    resp = lab.query("retail_share", "core", "sales", {"timestamp": iso_ms(sales_ts[2])})
    assert resp.version == 2
    assert len(resp.files) == 8
    # A numeric string is coerced (protocol §0).
    assert lab.query("retail_share", "core", "sales", {"version": "2"}).version == 2


@pytest.mark.parametrize("use_delta_format", FORMATS)
def test_limit(lab: SharingLab, use_delta_format: bool | None) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    df = delta_sharing.load_as_pandas(url, limit=5, use_delta_format=use_delta_format)
    assert len(df) == 5
    assert list(df.columns) == SALES_COLUMNS
    full = set(local_rows(lab))
    assert set(rows(df, SALES_COLUMNS)) <= full
    empty = delta_sharing.load_as_pandas(url, limit=0, use_delta_format=use_delta_format)
    assert len(empty) == 0


def test_limit_hint_prunes_files(lab: SharingLab) -> None:
    assert len(lab.query("retail_share", "core", "sales").files) == 9
    one = lab.query("retail_share", "core", "sales", {"limitHint": 1})
    assert len(one.files) == 1
    # The running sum of numRecords reaches the hint: never fewer rows than asked for.
    few = lab.query("retail_share", "core", "sales", {"limitHint": 12})
    records = [json.loads(f["stats"])["numRecords"] for f in few.files]
    assert sum(records) >= 12 and sum(records[:-1]) < 12
    assert len(lab.query("retail_share", "core", "sales", {"limitHint": 10_000}).files) == 9


def test_unpartitioned_table_without_history(lab: SharingLab) -> None:
    url = lab.url("alice", "retail_share", "other", "plain")
    df = delta_sharing.load_as_pandas(url)
    assert sorted(df["k"].tolist()) == list(range(10))
    assert str(df["ts"].dt.tz) == "UTC"
    resp = lab.query("retail_share", "other", "plain")
    assert resp.of("metaData")[0]["partitionColumns"] == []
    assert all(f["partitionValues"] == {} for f in resp.files)


def test_get_table_version(lab: SharingLab, sales_ts: dict[int, int]) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    assert delta_sharing.get_table_version(url) == 3
    # The earliest version committed at or after the timestamp.
    assert delta_sharing.get_table_version(url, starting_timestamp=iso_ms(sales_ts[1])) == 1
    assert delta_sharing.get_table_version(url, starting_timestamp=iso_ms(sales_ts[1] + 1)) == 2
    assert delta_sharing.get_table_version(url, starting_timestamp="2000-01-01T00:00:00Z") == 0


def test_version_endpoint_has_empty_body(lab: SharingLab) -> None:
    resp = lab.get("/shares/retail_share/schemas/core/tables/sales/version")
    assert resp.status_code == 200
    assert resp.headers["Delta-Table-Version"] == "3"
    assert resp.content == b""


def test_legacy_head_version(lab: SharingLab) -> None:
    resp = lab.session.head(
        lab.table_path("retail_share", "core", "sales"), headers=lab.auth("alice"), timeout=10
    )
    assert resp.status_code == 200
    assert resp.headers["Delta-Table-Version"] == "3"
    missing = lab.session.head(
        lab.table_path("retail_share", "core", "nope"), headers=lab.auth("alice"), timeout=10
    )
    assert missing.status_code == 404
    assert missing.content == b""


@pytest.mark.parametrize("use_delta_format", [True, False])
def test_get_table_metadata_and_protocol(lab: SharingLab, use_delta_format: bool) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    local = DeltaTable(str(lab.tables["sales"]))
    meta = delta_sharing.get_table_metadata(url, use_delta_format=use_delta_format)
    assert meta.id == local.metadata().id
    assert list(meta.partition_columns) == ["region"]
    assert meta.format.provider == "parquet"
    fields = [f["name"] for f in json.loads(meta.schema_string)["fields"]]
    assert fields == SALES_COLUMNS
    types = {f["name"]: f["type"] for f in json.loads(meta.schema_string)["fields"]}
    assert types["ts"] == "timestamp" and types["day"] == "date" and types["id"] == "long"
    protocol = delta_sharing.get_table_protocol(url, use_delta_format=use_delta_format)
    assert protocol.min_reader_version == 1


def test_metadata_headers_and_two_lines(lab: SharingLab) -> None:
    resp = lab.get("/shares/retail_share/schemas/core/tables/sales/metadata")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert resp.headers["Delta-Table-Version"] == "3"
    assert "responseformat=parquet" in resp.headers["delta-sharing-capabilities"]
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert [next(iter(line)) for line in lines] == ["protocol", "metaData"]
    assert lines[0]["protocol"]["minReaderVersion"] == 1
    meta = lines[1]["metaData"]
    assert {"id", "format", "schemaString", "partitionColumns"} <= set(meta)
    # History is shared but CDF is off on this table: configuration must not claim it.
    assert meta.get("configuration", {}).get("enableChangeDataFeed") != "true"
    events = lab.get("/shares/retail_share/schemas/core/tables/events/metadata")
    meta = json.loads(events.text.splitlines()[1])["metaData"]
    assert meta["configuration"].get("enableChangeDataFeed") == "true"


def test_capability_negotiation(lab: SharingLab) -> None:
    both = "responseformat=delta,parquet;readerfeatures=deletionvectors,columnmapping,timestampntz"
    # A reader-version-1 table asked for delta,parquet is answered in parquet.
    meta = lab.get(
        "/shares/retail_share/schemas/core/tables/sales/metadata",
        headers={"delta-sharing-capabilities": both},
    )
    assert "responseformat=parquet" in meta.headers["delta-sharing-capabilities"]
    delta = lab.query(
        "retail_share",
        "core",
        "sales",
        capabilities="responseformat=delta;readerfeatures=deletionvectors",
    )
    assert "responseformat=delta" in delta.headers["delta-sharing-capabilities"]
    proto = delta.lines[0]["protocol"]["deltaProtocol"]
    assert int(proto["minReaderVersion"]) >= 1 and "minWriterVersion" in proto
    assert "deltaMetadata" in delta.lines[1]["metaData"]
    assert len(delta.files) == 9
    for file in delta.files:
        add = file["deltaSingleAction"]["add"]
        assert add["path"].startswith("http://127.0.0.1")
        assert "X-Amz-Signature=" in add["path"]
        assert {"modificationTime", "dataChange", "size", "partitionValues"} <= set(add)
        assert isinstance(file["expirationTimestamp"], int)
    # Parquet-format lines: required fields, stats passed as a string, expiry reported.
    parquet = lab.query("retail_share", "core", "sales")
    assert "responseformat=parquet" in parquet.headers["delta-sharing-capabilities"]
    for file in parquet.files:
        assert {"url", "id", "partitionValues", "size"} <= set(file)
        assert isinstance(file["stats"], str)
        assert isinstance(file["expirationTimestamp"], int)
        assert "X-Amz-Signature=" in file["url"]
    assert len({f["id"] for f in parquet.files}) == 9
    # File ids are stable across requests.
    again = lab.query("retail_share", "core", "sales")
    assert {f["id"] for f in again.files} == {f["id"] for f in parquet.files}


def test_query_streams_ndjson(lab: SharingLab) -> None:
    resp = lab.post("/shares/retail_share/schemas/core/tables/sales/query", {})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert resp.headers["Delta-Table-Version"] == "3"
    assert "" not in resp.text.rstrip("\n").split("\n"), "NDJSON must have no blank lines"
    # A small answer (one ~256 KiB chunk) is sent whole, with its length; bigger ones stream
    # (tests/server/test_ndjson_body.py)
    assert resp.headers["Content-Length"] == str(len(resp.content))
    assert resp.headers.get("Transfer-Encoding") is None
    changes = lab.get("/shares/retail_share/schemas/core/tables/events/changes?startingVersion=0")
    assert changes.headers["Content-Length"] == str(len(changes.content))
    # No endStreamAction unless asked for: every line after the first two is a file (protocol §6.3).
    lines = [json.loads(x) for x in resp.text.splitlines()]
    assert all("file" in line for line in lines[2:])


def test_starting_version_query(lab: SharingLab) -> None:
    resp = lab.query("retail_share", "core", "sales", {"startingVersion": 2})
    assert resp.version == 2
    adds = resp.of("add")
    assert sorted(a["version"] for a in adds) == [2, 3]
    assert all("timestamp" in a and "url" in a for a in adds)
    ended = lab.query("retail_share", "core", "sales", {"startingVersion": 1, "endingVersion": 2})
    assert sorted({a["version"] for a in ended.of("add")}) == [1, 2]
    events = lab.query("retail_share", "core", "events", {"startingVersion": 2, "endingVersion": 2})
    # The update commit: its add and remove lines (dataChange=true), not its cdc files.
    assert events.of("add") and events.of("remove")
    assert not events.of("cdf")


# -- endStreamAction, maxFiles/pageToken paging, refreshToken (what Spark sends; raw requests) -----------

END_STREAM = "includeendstreamaction=true"


def test_end_stream_action_only_when_asked(lab: SharingLab) -> None:
    plain = lab.query("retail_share", "core", "sales")
    assert "includeendstreamaction" not in plain.headers["delta-sharing-capabilities"]
    assert not plain.of("endStreamAction")
    for caps in (
        END_STREAM,
        "responseformat=parquet;" + END_STREAM,
        "responseformat=delta;readerfeatures=deletionvectors;" + END_STREAM,
    ):
        resp = lab.query("retail_share", "core", "sales", capabilities=caps)
        assert "includeendstreamaction=true" in resp.headers["delta-sharing-capabilities"]
        assert "endStreamAction" in resp.lines[-1]
        assert len(resp.of("endStreamAction")) == 1
        assert len(resp.files) == 9
        end = resp.lines[-1]["endStreamAction"]
        assert not end.get("nextPageToken")
        assert end.get("minUrlExpirationTimestamp") == min(
            f["expirationTimestamp"] for f in resp.files
        )
    changes = lab.changes(
        "retail_share", "core", "events", "startingVersion=0", capabilities=END_STREAM
    )
    assert "endStreamAction" in changes.lines[-1]
    assert "includeendstreamaction=true" in changes.headers["delta-sharing-capabilities"]
    assert not lab.changes("retail_share", "core", "events", "startingVersion=0").of(
        "endStreamAction"
    )


def _page_through(lab: SharingLab, body: dict[str, Any], table: str = "sales") -> list[Response]:
    pages = []
    token = None
    for _ in range(50):
        page = lab.query(
            "retail_share", "core", table, {**body, **({"pageToken": token} if token else {})}
        )
        pages.append(page)
        end = page.lines[-1].get("endStreamAction")
        assert end is not None, "maxFiles implies an endStreamAction"
        token = end.get("nextPageToken")
        if not token:
            return pages
    raise AssertionError("paging did not end")


def test_query_paging_with_max_files(lab: SharingLab) -> None:
    pages = _page_through(lab, {"maxFiles": 2})
    assert [len(p.files) for p in pages] == [2, 2, 2, 2, 1]
    ids = [f["id"] for p in pages for f in p.files]
    assert len(ids) == len(set(ids)) == 9
    assert set(ids) == {f["id"] for f in lab.query("retail_share", "core", "sales").files}
    assert {p.version for p in pages} == {3}
    # Every page starts with the protocol and metaData lines.
    assert all(list(p.lines[0]) == ["protocol"] and list(p.lines[1]) == ["metaData"] for p in pages)
    # Hints are applied before paging; a time-travel query pages over its own snapshot.
    hint = json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": "region", "valueType": "string"},
                {"op": "literal", "value": "emea", "valueType": "string"},
            ],
        }
    )
    hinted = _page_through(lab, {"maxFiles": 1, "jsonPredicateHints": hint})
    assert sum(len(p.files) for p in hinted) == 3
    old = _page_through(lab, {"maxFiles": 4, "version": 1})
    assert sum(len(p.files) for p in old) == 7 and {p.version for p in old} == {1}
    streaming = _page_through(lab, {"maxFiles": 1, "startingVersion": 1})
    assert sorted(a["version"] for p in streaming for a in p.of("add")) == [1, 1, 1, 1, 2, 3]


def test_page_token_is_bound_to_the_query(lab: SharingLab) -> None:
    first = lab.query("retail_share", "core", "sales", {"maxFiles": 2})
    token = first.lines[-1]["endStreamAction"]["nextPageToken"]
    # Same token, different parameters or another table: 400.
    for path, body in (
        (SALES_Q, {"maxFiles": 2, "pageToken": token, "version": 1}),
        (SALES_Q, {"maxFiles": 2, "pageToken": token, "limitHint": 3}),
        (
            "/shares/retail_share/schemas/core/tables/events/query",
            {"maxFiles": 2, "pageToken": token},
        ),
        (SALES_Q, {"maxFiles": 2, "pageToken": token[:-3] + "abc"}),
    ):
        resp = lab.post(path, body)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["errorCode"] == "INVALID_PARAMETER_VALUE"


SALES_Q = "/shares/retail_share/schemas/core/tables/sales/query"


def test_changes_paging_with_max_files(lab: SharingLab) -> None:
    full = lab.changes("retail_share", "core", "events", "startingVersion=0")
    expected = sorted(json.dumps(x, sort_keys=True) for x in full.lines[2:])
    got: list[dict[str, Any]] = []
    token = None
    for _ in range(50):
        params = "startingVersion=0&maxFiles=2" + (f"&pageToken={token}" if token else "")
        page = lab.changes("retail_share", "core", "events", params)
        assert page.version == 0
        body = page.lines[2:-1]
        assert len(body) <= 2
        got += body
        token = page.lines[-1]["endStreamAction"].get("nextPageToken")
        if not token:
            break
    assert len(got) == len(full.lines) - 2

    def key(line: dict[str, Any]) -> str:
        action = dict(next(iter(line.values())))
        action.pop("url"), action.pop("expirationTimestamp", None)
        return json.dumps({next(iter(line)): action}, sort_keys=True)

    assert sorted(key(x) for x in got) == sorted(key(json.loads(x)) for x in expected)


def test_refresh_token_replays_the_same_snapshot(lab: SharingLab, tmp_path: Path) -> None:
    """A fresh table: get a refresh token, commit, refresh: same version, same files, new URLs work."""
    from .conftest import build_plain_table

    name = lab.unique("refresh")
    path = lab.home / "data" / "test" / name
    build_plain_table(path, rows=5)
    lab.catalog.register_table(f"lab.retail.{name}", str(path))
    lab.catalog.create_share(name)
    # with history: a refresh token replays its version (without history it may not; see
    # test_revocation.py::test_tokens_of_a_table_without_history_never_time_travel)
    lab.catalog.add_table_to_share(name, f"lab.retail.{name}", alias=f"s.{name}", history=True)
    lab.add_recipient(name, shares=(name,))

    first = lab.query(name, "s", name, {"includeRefreshToken": True}, recipient=name)
    end = first.lines[-1]["endStreamAction"]
    refresh = end["refreshToken"]
    assert refresh and first.version == 0

    from deltalake import write_deltalake

    write_deltalake(
        str(path),
        pa.table(
            {
                "k": pa.array([99], pa.int64()),
                "label": ["new"],
                "ts": pa.array([BASE_TS], pa.timestamp("us", tz="UTC")),
            }
        ),
        mode="append",
    )
    assert lab.query(name, "s", name, recipient=name).version == 1
    again = lab.query(name, "s", name, {"refreshToken": refresh}, recipient=name)
    assert again.version == 0
    assert {f["id"] for f in again.files} == {f["id"] for f in first.files}
    assert again.lines[-1]["endStreamAction"].get("refreshToken")
    for f in again.files:
        assert requests.get(f["url"], timeout=10).status_code == 200
    # A refresh token is bound to its table.
    other = lab.post(SALES_Q, {"refreshToken": refresh})
    assert other.status_code == 400
    both = lab.post(
        f"/shares/{name}/schemas/s/tables/{name}/query",
        {"refreshToken": refresh, "pageToken": "x"},
        recipient=name,
    )
    assert both.status_code == 400


# -- reader features and batch conversion ---------------------------------------------------------------


def test_timestamp_ntz_table_needs_delta_format(lab: SharingLab) -> None:
    """A reader-v3 table (timestampNtz) is served in delta format; a parquet-only client gets a 400."""
    url = lab.url("alice", "extra_share", "misc", "ntz")
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_as_pandas(url, use_delta_format=False)
    assert info.value.response.status_code == 400
    resp = lab.post("/shares/extra_share/schemas/misc/tables/ntz/query", {})
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == "UNSUPPORTED_OPERATION"
    assert "use_delta_format=True" in resp.json()["message"]
    expected = [pd.Timestamp("2024-01-01 08:30") + pd.Timedelta(hours=i) for i in range(3)]
    for fmt in (True, None):  # None: the client negotiates through /metadata and picks delta
        df = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert sorted(df["id"]) == [1, 2, 3]
        assert sorted(pd.to_datetime(df["local_time"])) == expected
    protocol = delta_sharing.get_table_protocol(url)
    assert protocol.min_reader_version == 3
    assert "timestampNtz" in (protocol.reader_features or [])
    meta = lab.get(
        "/shares/extra_share/schemas/misc/tables/ntz/metadata",
        headers={
            "delta-sharing-capabilities": "responseformat=delta,parquet;"
            "readerfeatures=deletionvectors,columnmapping,timestampntz"
        },
    )
    assert "responseformat=delta" in meta.headers["delta-sharing-capabilities"]


@pytest.mark.parametrize("use_delta_format", [False, True])
def test_convert_in_batches(lab: SharingLab, use_delta_format: bool) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    df = delta_sharing.load_as_pandas(
        url, use_delta_format=use_delta_format, convert_in_batches=True
    )
    assert rows(df, SALES_COLUMNS) == local_rows(lab)
    changes = delta_sharing.load_table_changes_as_pandas(
        lab.url("alice", "retail_share", "core", "events"),
        starting_version=1,
        use_delta_format=use_delta_format,
        convert_in_batches=True,
    )
    assert set(changes["_commit_version"].astype(int)) == {1, 2, 3, 4}


def test_special_partition_values(lab: SharingLab, tmp_path: Path) -> None:
    """Partition values that are URL-escaped in the Delta log (and again on disk) download correctly."""
    from deltalake import write_deltalake

    path = tmp_path / "cities"
    cities = ["São Paulo", "a/b", "x=y", "50%", "a b", "#hash?q", None]
    write_deltalake(
        str(path),
        pa.table({"city": pa.array(cities, pa.string()), "n": pa.array(range(7), pa.int64())}),
        partition_by=["city"],
    )
    share, who = lab.share_table(path)
    resp = lab.query(share, "s", "t", recipient=who)
    assert sorted(f["partitionValues"]["city"] or "" for f in resp.files) == sorted(
        c or "" for c in cities
    )
    for f in resp.files:
        got = requests.get(f["url"], timeout=10)
        assert got.status_code == 200, (f["partitionValues"], got.status_code, got.text[:200])
        assert len(got.content) == f["size"]
    url = f"{lab.profiles[who]}#{share}.s.t"
    for fmt in FORMATS:
        df = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert sorted(zip(df["n"], df["city"].where(df["city"].notna(), None), strict=True)) == [
            (i, c) for i, c in enumerate(cities)
        ]
    hint = json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": "city", "valueType": "string"},
                {"op": "literal", "value": "São Paulo", "valueType": "string"},
            ],
        }
    )
    only = lab.query(share, "s", "t", {"jsonPredicateHints": hint}, recipient=who)
    assert [f["partitionValues"]["city"] for f in only.files] == ["São Paulo"]


def test_checkpointed_table(lab: SharingLab, tmp_path: Path) -> None:
    """Snapshots rebuilt from a checkpoint (and from a log whose early commits were cleaned up)."""
    from deltalake import write_deltalake

    path = tmp_path / "checkpointed"
    for i in range(4):
        write_deltalake(
            str(path),
            pa.table({"k": pa.array([i * 10 + j for j in range(3)], pa.int64())}),
            mode="append",
        )
    DeltaTable(str(path)).delete("k = 11")  # v4: a remove and an add
    DeltaTable(str(path)).create_checkpoint()  # checkpoint at v4
    write_deltalake(str(path), pa.table({"k": pa.array([99], pa.int64())}), mode="append")  # v5
    share, who = lab.share_table(path)
    url = f"{lab.profiles[who]}#{share}.s.t"

    def expected(version: int | None = None) -> list[int]:
        return sorted(DeltaTable(str(path), version=version).to_pandas()["k"].tolist())

    resp = lab.query(share, "s", "t", recipient=who)
    assert resp.version == 5
    assert len(resp.files) == len(DeltaTable(str(path)).file_uris())
    hint = json.dumps(
        {
            "op": "greaterThan",
            "children": [
                {"op": "column", "name": "k", "valueType": "long"},
                {"op": "literal", "value": "50", "valueType": "long"},
            ],
        }
    )
    assert len(lab.query(share, "s", "t", {"jsonPredicateHints": hint}, recipient=who).files) == 1
    for fmt in FORMATS:
        assert sorted(delta_sharing.load_as_pandas(url, use_delta_format=fmt)["k"]) == expected()
    assert sorted(delta_sharing.load_as_pandas(url, version=2)["k"]) == expected(2)
    # Log clean-up: commits before the checkpoint are gone; the checkpoint still gives v4 and v5.
    for v in range(4):
        (path / "_delta_log" / f"{v:020d}.json").unlink()
    assert sorted(delta_sharing.load_as_pandas(url)["k"]) == expected()
    assert sorted(delta_sharing.load_as_pandas(url, version=4)["k"]) == expected(4)
    gone = lab.post(f"/shares/{share}/schemas/s/tables/t/query", {"version": 2}, recipient=who)
    assert 400 <= gone.status_code < 500, gone.text


def test_column_types_round_trip(lab: SharingLab, tmp_path: Path) -> None:
    """Every primitive and nested type, and typed partition columns, through both formats."""
    import datetime as dt
    import decimal

    from deltalake import write_deltalake

    path = tmp_path / "types"
    n = 4
    table = pa.table(
        {
            "i8": pa.array([1, -2, 3, None], pa.int8()),
            "i16": pa.array([300, -300, 0, 1], pa.int16()),
            "i32": pa.array([70000, 1, 2, 3], pa.int32()),
            "f32": pa.array([1.5, 2.5, None, -1.0], pa.float32()),
            "dec": pa.array(
                [
                    decimal.Decimal("12.34"),
                    None,
                    decimal.Decimal("-0.01"),
                    decimal.Decimal("99999999.99"),
                ],
                pa.decimal128(10, 2),
            ),
            "flag": pa.array([True, False, None, True], pa.bool_()),
            "raw": pa.array([b"\x00\x01", b"", None, b"xyz"], pa.binary()),
            "tags": pa.array([["a", "b"], [], None, ["c"]], pa.list_(pa.string())),
            "attrs": pa.array(
                [[("k", 1)], [], None, [("x", 2), ("y", 3)]], pa.map_(pa.string(), pa.int64())
            ),
            "point": pa.array(
                [{"x": 1.0, "y": 2.0}, None, {"x": 0.0, "y": -1.0}, {"x": 5.0, "y": None}],
                pa.struct([("x", pa.float64()), ("y", pa.float64())]),
            ),
            "pday": pa.array(
                [dt.date(2024, 1, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 29), None], pa.date32()
            ),
            "pnum": pa.array([1, 2, 1, 2], pa.int32()),
            "pflag": pa.array([True, False, True, False], pa.bool_()),
        }
    )
    write_deltalake(str(path), table, partition_by=["pday", "pnum", "pflag"])
    share, who = lab.share_table(path)
    url = f"{lab.profiles[who]}#{share}.s.t"
    expected = DeltaTable(str(path)).to_pandas()

    def canon(df: pd.DataFrame) -> list[str]:
        out = []
        for rec in df[list(table.column_names)].to_dict("records"):
            out.append(json.dumps({k: _canon_cell(v) for k, v in rec.items()}, sort_keys=True))
        return sorted(out)

    for fmt in FORMATS:
        df = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert len(df) == n
        assert canon(df) == canon(expected), fmt
    meta = delta_sharing.get_table_metadata(url)
    types = {f["name"]: f["type"] for f in json.loads(meta.schema_string)["fields"]}
    assert types["dec"] == "decimal(10,2)" and types["i8"] == "byte" and types["i16"] == "short"
    assert types["tags"]["type"] == "array" and types["attrs"]["type"] == "map"
    assert types["point"]["type"] == "struct"


def _canon_cell(value: Any) -> Any:
    """A JSON-able canonical form of one cell (numpy, NaN/None, dates, bytes, nested values)."""
    import datetime as dt
    import decimal

    import numpy as np

    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray):
        return [_canon_cell(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_canon_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canon_cell(v) for k, v in sorted(value.items())}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, decimal.Decimal):
        return str(value.quantize(decimal.Decimal("0.01")))
    if isinstance(value, pd.Timestamp | dt.datetime):
        return pd.Timestamp(value).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _canon_cell(value.item())
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return round(value, 6)
    return value
