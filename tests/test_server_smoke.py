"""Smoke test of the sharing server: the real server on a loopback port, driven by the official client.

The full conformance suite lives in ``tests/server/``; this file only proves the core paths work end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
import requests
from deltalake import DeltaTable, write_deltalake

from helpers import server as srv
from helpers.catalog import Catalog
from helpers.exceptions import ServerError
from helpers.profiles import profile_dict
from tests.support import free_port


def _make_table(home: Path) -> Path:
    loc = home / "data" / "demo" / "sales" / "orders"
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "region": ["EU", "US", "EU", "APAC"],
            "amount": [1.5, 2.5, None, 4.0],
            "ts": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"], utc=True
            ),
        }
    )
    write_deltalake(
        str(loc), df, partition_by=["region"], configuration={"delta.enableChangeDataFeed": "true"}
    )
    write_deltalake(str(loc), df.assign(id=df.id + 10), mode="append")
    DeltaTable(str(loc)).delete("id = 2")  # a commit with a cdc file
    return loc


def _setup(home: Path, endpoint: str) -> Path:
    loc = _make_table(home)
    cat = Catalog(home / "catalog.db")
    cat.register_table("demo.sales.orders", str(loc))
    cat.create_share("sales")
    cat.add_table_to_share("sales", "demo.sales.orders", history=True)
    cat.create_share("eu_only")
    cat.add_table_to_share(
        "eu_only", "demo.sales.orders", alias="eu.orders", partition=[("region", "region", True)]
    )
    cat.create_share("hidden")
    cat.create_recipient("alice", properties={"region": "EU"})
    cat.grant("sales", "alice")
    cat.grant("eu_only", "alice")
    profile = home / "alice.share"
    profile.write_text(json.dumps(profile_dict(endpoint, cat.issue_token("alice"))))
    return profile


@pytest.fixture
def shared(lab_home: Path, server_factory):
    server = server_factory(lab_home)
    profile = _setup(lab_home, server.endpoint)
    return server, profile


def test_list_and_load_both_formats(shared) -> None:
    server, profile = shared
    client = delta_sharing.SharingClient(str(profile))
    assert sorted(s.name for s in client.list_shares()) == ["eu_only", "sales"]
    assert {(t.share, t.schema, t.name) for t in client.list_all_tables()} == {
        ("sales", "sales", "orders"),
        ("eu_only", "eu", "orders"),
    }
    url = f"{profile}#sales.sales.orders"
    expected = [1, 3, 4, 11, 12, 13, 14]
    for use_delta in (None, False, True):
        df = delta_sharing.load_as_pandas(url, use_delta_format=use_delta)
        assert sorted(df["id"]) == expected, use_delta
    assert delta_sharing.get_table_version(url) == 2
    old = delta_sharing.load_as_pandas(url, version=0, use_delta_format=False)
    assert sorted(old["id"]) == [1, 2, 3, 4]
    # recipient partition filter: alice (region=EU) only sees EU rows
    eu = delta_sharing.load_as_pandas(f"{profile}#eu_only.eu.orders")
    assert set(eu["region"]) == {"EU"} and len(eu) == 4


def test_change_data_feed(shared) -> None:
    _, profile = shared
    url = f"{profile}#sales.sales.orders"
    for use_delta in (False, True):
        changes = delta_sharing.load_table_changes_as_pandas(url, 0, use_delta_format=use_delta)
        deleted = changes[changes["_change_type"] == "delete"]
        assert list(deleted["id"]) == [2]
        assert (changes["_change_type"] == "insert").sum() == 8


def test_errors_and_url_security(shared) -> None:
    server, profile = shared
    token = json.loads(profile.read_text())["bearerToken"]
    base = server.endpoint.rstrip("/")
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.get(f"{base}/shares", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 401 and r.json()["errorCode"] == "UNAUTHENTICATED"
    missing = requests.get(f"{base}/shares/nothing/schemas", headers=auth, timeout=10)
    ungranted = requests.get(f"{base}/shares/hidden/schemas", headers=auth, timeout=10)
    assert missing.status_code == ungranted.status_code == 404
    assert missing.json()["message"].replace("nothing", "X") == ungranted.json()["message"].replace(
        "hidden", "X"
    )
    r = requests.post(
        f"{base}/shares/sales/schemas/sales/tables/orders/query",
        json={"version": 0, "timestamp": "2024-01-01T00:00:00Z"},
        headers=auth,
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    r = requests.post(
        f"{base}/shares/sales/schemas/sales/tables/orders/query", json={}, headers=auth, timeout=10
    )
    lines = r.text.splitlines()
    assert r.headers["Delta-Table-Version"] == "2" and len(lines) == 2 + 5
    url = json.loads(lines[2])["file"]["url"]
    assert "X-Amz-Signature=" in url
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0
    part = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=10)
    assert part.status_code == 206 and part.content == b"PAR1"
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    r = requests.get(tampered, timeout=10)
    assert r.status_code == 403 and "orders" not in r.text and "parquet" not in r.text


def test_lifecycle_start_status_stop(lab_home: Path) -> None:
    port = free_port()
    try:
        state = srv.start(lab_home, port=port)
        assert state["port"] == port and requests.get(f"http://127.0.0.1:{port}/health").ok
        again = srv.start(lab_home, port=port)
        assert again["pid"] == state["pid"] and again["already_running"]
        assert srv.status(lab_home)["healthy"]
        with pytest.raises(ServerError, match="already running"):
            srv.serve(lab_home, port=free_port())
    finally:
        assert srv.stop(lab_home)
    assert srv.status(lab_home) is None
    assert not srv.stop(lab_home)


def test_one_port_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """``port``, else ``$SHARELAB_PORT``, else 8080, else (8080 taken) a free port; 0 counts as unset."""
    from helpers.server import lifecycle

    monkeypatch.setenv("SHARELAB_PORT", "18123")
    assert srv.server_port(4321) == 4321
    assert srv.server_port() == srv.server_port(0) == 18123
    monkeypatch.setenv("SHARELAB_PORT", "0")
    monkeypatch.setattr(lifecycle, "_port_free", lambda host, port: True)
    assert srv.server_port() == srv.DEFAULT_PORT == 8080
    monkeypatch.setattr(lifecycle, "_port_free", lambda host, port: False)
    assert srv.server_port() not in (0, 8080)


def test_ensure_server_is_the_one_way_in(lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook's and the labs' ``ensure_server`` start one server, on the same rule, and reuse it."""
    from helpers.labs.setup import ensure_server as lab_ensure
    from helpers.notebook import ensure_server as notebook_ensure

    port = free_port()
    monkeypatch.setenv("SHARELAB_PORT", str(port))
    try:
        first = lab_ensure(lab_home)
        assert first["port"] == port and not first["already_running"]
        again = notebook_ensure()
        assert again["pid"] == first["pid"] and again["healthy"]
        assert srv.ensure_server(lab_home)["pid"] == first["pid"]
    finally:
        assert srv.stop(lab_home)


def test_hints_limit_and_paging(shared) -> None:
    server, profile = shared
    token = json.loads(profile.read_text())["bearerToken"]
    base = server.endpoint.rstrip("/")
    auth = {"Authorization": f"Bearer {token}"}
    query = f"{base}/shares/sales/schemas/sales/tables/orders/query"

    def files(body: dict, headers: dict | None = None) -> list[dict]:
        r = requests.post(query, json=body, headers={**auth, **(headers or {})}, timeout=10)
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines()[2:]]

    region_eu = {
        "op": "equal",
        "children": [
            {"op": "column", "name": "region", "valueType": "string"},
            {"op": "literal", "value": "EU", "valueType": "string"},
        ],
    }
    eu_files = files({"jsonPredicateHints": json.dumps(region_eu)})
    assert len(eu_files) == 2
    assert {f["file"]["partitionValues"]["region"] for f in eu_files} == {"EU"}
    not_eu = files({"jsonPredicateHints": json.dumps({"op": "not", "children": [region_eu]})})
    assert {f["file"]["partitionValues"]["region"] for f in not_eu} == {"APAC", "US"}
    assert (
        len(files({"jsonPredicateHints": '{"op":"=","children":[]}'})) == 5
    )  # malformed: no skipping
    assert len(files({"limitHint": 1})) == 1
    # paging with maxFiles: endStreamAction only when asked for, pages cover every file once
    page1 = files({"maxFiles": 2})
    assert "endStreamAction" in page1[-1] and len(page1) == 3
    seen = [f["file"]["id"] for f in page1[:-1]]
    token_ = page1[-1]["endStreamAction"]["nextPageToken"]
    while token_:
        page = files({"maxFiles": 2, "pageToken": token_})
        seen += [f["file"]["id"] for f in page[:-1]]
        token_ = page[-1]["endStreamAction"].get("nextPageToken")
    assert len(seen) == len(set(seen)) == 5
    assert all("file" in f for f in files({}))  # no endStreamAction unless requested
    shares = requests.get(f"{base}/shares?maxResults=1", headers=auth, timeout=10).json()
    assert len(shares["items"]) == 1 and shares["nextPageToken"]
    rest = requests.get(
        f"{base}/shares?maxResults=1&pageToken={shares['nextPageToken']}", headers=auth, timeout=10
    ).json()
    assert [s["name"] for s in shares["items"] + rest["items"]] == ["eu_only", "sales"]


def _col(name: str, vt: str) -> dict:
    return {"op": "column", "name": name, "valueType": vt}


def _lit(value: str, vt: str) -> dict:
    return {"op": "literal", "value": value, "valueType": vt}


def test_predicate_pitfalls_are_fixed() -> None:
    """Protocol §5.2 (a)-(c),(e): conservative three-valued skipping."""
    from helpers.server.predicates import file_matches, parse_json_predicate

    stats = {
        "numRecords": 3,
        "minValues": {"id": 1, "ts": "2024-01-01T00:00:00.000Z"},
        "maxValues": {"id": 100, "ts": "2024-01-03T00:00:00.000Z"},
        "nullCount": {"id": 0, "amt": 3, "ts": 0},
    }
    add = {"partitionValues": {"region": "EU", "day": None}, "stats": json.dumps(stats)}

    def keeps(tree: dict) -> bool:
        pred = parse_json_predicate(json.dumps(tree))
        assert pred is not None
        return file_matches(pred, add)

    eq5 = {"op": "equal", "children": [_col("id", "long"), _lit("5", "long")]}
    assert keeps(eq5) and keeps({"op": "not", "children": [eq5]})  # (a) NOT(maybe) stays maybe
    assert not keeps({"op": "greaterThan", "children": [_col("id", "long"), _lit("100", "long")]})
    assert keeps({"op": "isNull", "children": [_col("amt", "double")]})  # (b) all null
    assert not keeps({"op": "isNull", "children": [_col("id", "long")]})  # (b) nullCount 0
    day = {"op": "equal", "children": [_col("day", "date"), _lit("2024-01-01", "date")]}
    assert not keeps(day) and not keeps({"op": "not", "children": [day]})  # (c) NULL partition
    ts = {
        "op": "greaterThan",
        "children": [_col("ts", "timestamp"), _lit("2024-01-03T00:00:00.000500Z", "timestamp")],
    }
    assert keeps(ts)  # (e) ms stats widened by 1 ms
    assert parse_json_predicate('{"op":"equal","children":[]}') is None  # malformed: no skipping
    assert file_matches(None, add)
