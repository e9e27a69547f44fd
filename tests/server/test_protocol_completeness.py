"""Protocol details: limitHint only after predicates (never dropping a file that could match), SQL
predicateHints best effort, includeHistoricalProtocol, capabilities echoed only as asked."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import delta_sharing

from .conftest import BASE_TS, SharingLab

SALES = ("retail_share", "core", "sales")


def _stats(f: dict[str, Any]) -> dict[str, Any]:
    return json.loads(f["stats"])


def _may_hold_day(f: dict[str, Any], day: str) -> bool:
    s = _stats(f)
    return s["minValues"]["day"] <= day <= s["maxValues"]["day"]


def test_sql_predicate_hints_prune_files(lab: SharingLab) -> None:
    day = (BASE_TS + dt.timedelta(days=5)).date().isoformat()  # id 5: a v0 file
    every = lab.query(*SALES).files
    hinted = lab.query(*SALES, {"predicateHints": [f"day = '{day}'"]}).files
    could = [f for f in every if _may_hold_day(f, day)]
    assert 0 < len(hinted) < len(every)
    assert {f["id"] for f in hinted} == {f["id"] for f in could}  # best effort, never under-returns
    both = lab.query(*SALES, {"predicateHints": ["region = 'emea'", "amount >= 100"]}).files
    assert both and all(f["partitionValues"]["region"] == "emea" for f in both)
    assert all(_stats(f)["maxValues"]["amount"] >= 100 for f in both)
    # unreadable SQL (unknown column, a function call): ignored, every file
    for hint in ("nope = 1", "upper(region) = 'EMEA'", "region = "):
        assert len(lab.query(*SALES, {"predicateHints": [hint]}).files) == len(every)


def test_limit_hint_never_drops_a_file_that_could_match(lab: SharingLab) -> None:
    """The issue's case: a SQL hint on day plus limitHint 2 returned a file of another day."""
    day = (BASE_TS + dt.timedelta(days=5)).date().isoformat()
    every = lab.query(*SALES).files
    could = {f["id"] for f in every if _may_hold_day(f, day)}
    limited = lab.query(*SALES, {"predicateHints": [f"day = '{day}'"], "limitHint": 2}).files
    assert {f["id"] for f in limited} == could
    # a malformed JSON hint is not applied: then the limit is not either
    bad = lab.query(*SALES, {"jsonPredicateHints": '{"op": "bogus"}', "limitHint": 1}).files
    assert len(bad) == len(every)
    unreadable = lab.query(*SALES, {"predicateHints": ["f(x) = 1"], "limitHint": 1}).files
    assert len(unreadable) == len(every)
    # a partition predicate is exact: its files count, so the limit applies after it
    emea = json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": "region", "valueType": "string"},
                {"op": "literal", "value": "emea", "valueType": "string"},
            ],
        }
    )
    one = lab.query(*SALES, {"jsonPredicateHints": emea, "limitHint": 1}).files
    assert len(one) == 1 and one[0]["partitionValues"]["region"] == "emea"
    # data-column predicates are ranges: files that only may match do not count, none is dropped
    rng = json.dumps(
        {
            "op": "greaterThanOrEqual",
            "children": [
                {"op": "column", "name": "amount", "valueType": "double"},
                {"op": "literal", "value": "100", "valueType": "double"},
            ],
        }
    )
    all_maybe = lab.query(*SALES, {"jsonPredicateHints": rng}).files
    assert len(lab.query(*SALES, {"jsonPredicateHints": rng, "limitHint": 1}).files) >= 1
    for f in lab.query(*SALES, {"jsonPredicateHints": rng, "limitHint": 1}).files:
        assert f["id"] in {g["id"] for g in all_maybe}


def test_official_client_with_hints_and_limit(lab: SharingLab) -> None:
    """The client sends limitHint and jsonPredicateHints (it has no SQL hints): exact rows."""
    url = lab.url("alice", *SALES)
    amer = json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": "region", "valueType": "string"},
                {"op": "literal", "value": "amer", "valueType": "string"},
            ],
        }
    )
    frame = delta_sharing.load_as_pandas(url, limit=2, jsonPredicateHints=amer)
    assert len(frame) == 2 and set(frame["region"]) == {"amer"}


def test_capabilities_echoed_only_as_asked(lab: SharingLab) -> None:
    path = "/shares/retail_share/schemas/core/tables/sales/query"
    plain = lab.post(path, {"maxFiles": 2})
    assert plain.status_code == 200
    assert plain.headers["delta-sharing-capabilities"] == "responseformat=parquet"
    assert "endStreamAction" in plain.text.splitlines()[-1]  # sent, because maxFiles asks for it
    asked = lab.post(
        path, {}, headers={"delta-sharing-capabilities": "includeendstreamaction=true"}
    )
    assert asked.headers["delta-sharing-capabilities"] == (
        "responseformat=parquet;includeendstreamaction=true"
    )
    changes = lab.get(
        "/shares/retail_share/schemas/core/tables/events/changes?startingVersion=0&maxFiles=2"
    )
    assert changes.headers["delta-sharing-capabilities"] == "responseformat=parquet"


def test_include_historical_protocol_on_streaming_query(lab: SharingLab) -> None:
    """A table whose protocol is upgraded at v1: the protocol line of v1 only when asked (delta)."""
    from deltalake import DeltaTable

    from .conftest import build_plain_table

    name = lab.unique("proto")
    path = lab.home / "data" / "test" / name
    build_plain_table(path, rows=3)
    DeltaTable(str(path)).alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    share, who = lab.share_table(path, history=True)
    caps = "responseformat=delta;readerfeatures=deletionvectors,columnmapping,timestampntz"
    q = f"/shares/{share}/schemas/s/tables/t/query"
    hdr = {"delta-sharing-capabilities": caps}
    without = lab.parse(lab.post(q, {"startingVersion": 0}, recipient=who, headers=hdr))
    with_proto = lab.parse(
        lab.post(
            q, {"startingVersion": 0, "includeHistoricalProtocol": True}, recipient=who, headers=hdr
        )
    )
    assert len(without.of("protocol")) == 1  # the head line only
    protocols = with_proto.of("protocol")
    log = sorted((path / "_delta_log").glob("*.json"))
    upgraded = any('"protocol"' in p.read_text() for p in log[1:])
    assert upgraded, "the property change upgrades the protocol at v1"
    assert len(protocols) == 2
