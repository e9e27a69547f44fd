"""jsonPredicateHints file skipping (protocol §5): pruning verified by counting returned files.

The sales table has 9 files at v3 (see ``conftest.build_sales_table``):
v0 emea/amer/apac with amount 0..29; v1 emea/amer/apac/NULL with amount 100..111 and all-NULL names in
the amer and NULL-region files; v2 apac with amount 7 twice; v3 emea with amounts 5 and 200.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delta_sharing
import pandas as pd
import pytest

from .conftest import SharingLab


def col(name: str, value_type: str) -> dict[str, Any]:
    return {"op": "column", "name": name, "valueType": value_type}


def lit(value: str, value_type: str) -> dict[str, Any]:
    return {"op": "literal", "value": value, "valueType": value_type}


def cmp(op: str, name: str, value: str, value_type: str) -> dict[str, Any]:
    return {"op": op, "children": [col(name, value_type), lit(value, value_type)]}


def not_(child: dict[str, Any]) -> dict[str, Any]:
    return {"op": "not", "children": [child]}


def is_null(name: str, value_type: str) -> dict[str, Any]:
    return {"op": "isNull", "children": [col(name, value_type)]}


def and_(*children: dict[str, Any]) -> dict[str, Any]:
    return {"op": "and", "children": list(children)}


def or_(*children: dict[str, Any]) -> dict[str, Any]:
    return {"op": "or", "children": list(children)}


Rows = Callable[[pd.DataFrame], pd.Series]

# (id, predicate, expected number of files, the rows the predicate selects)
CASES: list[tuple[str, dict[str, Any], int, Rows]] = [
    ("partition_equal", cmp("equal", "region", "emea", "string"), 3, lambda d: d.region == "emea"),
    (
        "partition_or",
        or_(cmp("equal", "region", "emea", "string"), cmp("equal", "region", "amer", "string")),
        5,
        lambda d: d.region.isin(["emea", "amer"]),
    ),
    # NULL partition values never satisfy a comparison (pitfall c).
    ("partition_less_than", cmp("lessThan", "region", "b", "string"), 5, lambda d: d.region < "b"),
    ("partition_is_null", is_null("region", "string"), 1, lambda d: d.region.isna()),
    ("partition_not_null", not_(is_null("region", "string")), 8, lambda d: d.region.notna()),
    ("stats_greater", cmp("greaterThan", "amount", "50", "double"), 5, lambda d: d.amount > 50),
    (
        "stats_not_greater",
        not_(cmp("greaterThan", "amount", "50", "double")),
        5,
        lambda d: ~(d.amount > 50),
    ),
    # NOT over a range (pitfall a): only the file whose every row equals 7 can be skipped...
    (
        "stats_not_equal_constant_file",
        not_(cmp("equal", "amount", "7", "double")),
        8,
        lambda d: d.amount != 7,
    ),
    # ...and a file whose range merely contains 5 must be kept.
    (
        "stats_not_equal_in_range",
        not_(cmp("equal", "amount", "5", "double")),
        9,
        lambda d: d.amount != 5,
    ),
    ("stats_long_equal", cmp("equal", "id", "43", "long"), 1, lambda d: d.id == 43),
    (
        "stats_date_equal",
        cmp("equal", "day", "2024-01-02", "date"),
        2,
        lambda d: pd.to_datetime(d.day.astype(str)) == pd.Timestamp("2024-01-02"),
    ),
    (
        "stats_timestamp_greater",
        cmp("greaterThan", "ts", "2024-01-02T20:00:00Z", "timestamp"),
        1,
        lambda d: d.ts > pd.Timestamp("2024-01-02T20:00:00Z"),
    ),
    # isNull on a data column uses nullCount (pitfall b).
    ("stats_is_null", is_null("name", "string"), 2, lambda d: d.name.isna()),
    ("stats_not_is_null", not_(is_null("name", "string")), 7, lambda d: d.name.notna()),
    (
        "partition_and_stats",
        and_(
            cmp("equal", "region", "emea", "string"), cmp("greaterThan", "amount", "50", "double")
        ),
        2,
        lambda d: (d.region == "emea") & (d.amount > 50),
    ),
    (
        "unknown_column",
        cmp("equal", "nope", "1", "int"),
        9,
        lambda d: pd.Series(False, index=d.index),
    ),
]


def count_files(lab: SharingLab, hints: str | dict[str, Any], recipient: str = "alice") -> int:
    resp = lab.query(
        "retail_share", "core", "sales", {"jsonPredicateHints": hints}, recipient=recipient
    )
    return len(resp.files)


@pytest.mark.parametrize("name,predicate,expected,_rows", CASES, ids=[c[0] for c in CASES])
def test_pruning_counts(
    lab: SharingLab, name: str, predicate: dict[str, Any], expected: int, _rows: Rows
) -> None:
    assert count_files(lab, json.dumps(predicate)) == expected


@pytest.fixture(scope="module")
def full(lab: SharingLab) -> pd.DataFrame:
    return delta_sharing.load_as_pandas(
        lab.url("alice", "retail_share", "core", "sales"), use_delta_format=False
    )


@pytest.mark.parametrize("name,predicate,_expected,select", CASES, ids=[c[0] for c in CASES])
def test_pruning_is_conservative(
    lab: SharingLab,
    full: pd.DataFrame,
    name: str,
    predicate: dict[str, Any],
    _expected: int,
    select: Rows,
) -> None:
    """Every row the predicate selects is still in what the official client loads."""
    url = lab.url("alice", "retail_share", "core", "sales")
    assert len(full) == 46
    # The delta format reads fastest; which files the server keeps does not depend on the format.
    pruned = delta_sharing.load_as_pandas(
        url, jsonPredicateHints=json.dumps(predicate), use_delta_format=True
    )
    wanted = set(full[select(full).fillna(False).astype(bool)]["id"])
    assert wanted <= set(pruned["id"])


def test_partition_hint_through_client_is_exact(lab: SharingLab) -> None:
    url = lab.url("alice", "retail_share", "core", "sales")
    hint = json.dumps(cmp("equal", "region", "apac", "string"))
    for fmt in (None, False, True):
        df = delta_sharing.load_as_pandas(url, jsonPredicateHints=hint, use_delta_format=fmt)
        assert set(df["region"]) == {"apac"}
        assert len(df) == 10 + 3 + 2


MALFORMED = [
    "not json at all",
    json.dumps([cmp("equal", "region", "emea", "string")]),  # a top-level array
    json.dumps({"op": "=", "children": [col("region", "string"), lit("emea", "string")]}),
    json.dumps(cmp("equal", "region", "emea", "integer")),  # unknown valueType
    json.dumps({"jsonPredicateHints": cmp("equal", "region", "emea", "string")}),  # wrapped twice
    json.dumps(cmp("equal", "amount", "abc", "double")),  # literal that does not parse
    json.dumps(
        {"op": "and", "children": [cmp("equal", "region", "emea", "string")]}
    ),  # and with 1 child
    json.dumps(
        {"op": "equal", "children": [col("region", "string"), lit("emea", "int")]}
    ),  # type mismatch
    json.dumps({"op": "isNull", "children": [lit("1", "int")]}),  # isNull over a literal
    json.dumps(not_(not_(not_({})))),
    "",
]


@pytest.mark.parametrize("hint", MALFORMED)
def test_malformed_hints_mean_no_skipping(lab: SharingLab, hint: str) -> None:
    assert count_files(lab, hint) == 9


def test_deep_hint_is_ignored_not_an_error(lab: SharingLab) -> None:
    node: dict[str, Any] = cmp("equal", "region", "emea", "string")
    for _ in range(150):
        node = not_(not_(node))
    assert count_files(lab, json.dumps(node)) == 9


def test_hint_as_json_object_is_accepted(lab: SharingLab) -> None:
    # delta-sharing-rs' legacy client sends an object instead of a string: no error, never under-returns.
    count = count_files(lab, cmp("equal", "region", "emea", "string"))
    assert count in (3, 9)


def test_hints_apply_before_limit(lab: SharingLab) -> None:
    resp = lab.query(
        "retail_share",
        "core",
        "sales",
        {
            "jsonPredicateHints": json.dumps(cmp("equal", "region", "amer", "string")),
            "limitHint": 1,
        },
    )
    assert len(resp.files) == 1
    assert resp.files[0]["partitionValues"]["region"] == "amer"


def test_hints_on_time_travel(lab: SharingLab) -> None:
    resp = lab.query(
        "retail_share",
        "core",
        "sales",
        {"jsonPredicateHints": json.dumps(cmp("equal", "region", "emea", "string")), "version": 0},
    )
    assert len(resp.files) == 1
    assert resp.version == 0


def test_timestamp_stats_are_widened_to_millisecond_precision(
    lab: SharingLab, tmp_path: Path
) -> None:
    """Stats keep milliseconds, data keeps microseconds (pitfall e): never skip a file on the ms edge."""
    import datetime as dt

    import pyarrow as pa
    from deltalake import write_deltalake

    path = tmp_path / "micro"
    stamps = [dt.datetime(2024, 1, 1, 0, 0, 0, us, tzinfo=dt.UTC) for us in (250, 500)]
    write_deltalake(
        str(path),
        pa.table(
            {
                "id": pa.array([1, 2], pa.int64()),
                "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    share, who = lab.share_table(path)
    edge = "2024-01-01T00:00:00.000Z"

    def kept(predicate: dict[str, Any]) -> int:
        body = {"jsonPredicateHints": json.dumps(predicate)}
        return len(lab.query(share, "s", "t", body, recipient=who).files)

    assert kept(cmp("greaterThan", "ts", edge, "timestamp")) == 1
    assert kept(not_(cmp("equal", "ts", edge, "timestamp"))) == 1
    assert kept(cmp("lessThan", "ts", "2023-12-31T23:59:59.000Z", "timestamp")) == 0
    assert kept(cmp("greaterThan", "ts", "2024-01-01T00:00:00.002Z", "timestamp")) == 0
