"""Change data feed (protocol §4) over insert/update/delete/merge commits written by deltalake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import delta_sharing
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from .conftest import SharingLab, iso_ms

FORMATS = [None, False, True]
KEY = ["id", "region", "v", "_change_type", "_commit_version"]


def change_rows(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    out = [
        (int(r[0]), r[1], r[2], r[3], int(r[4])) for r in df[KEY].itertuples(index=False, name=None)
    ]
    return sorted(out, key=lambda r: (r[4], r[0], r[3], r[2]))


def local_changes(lab: SharingLab, start: int, end: int | None = None) -> list[tuple[Any, ...]]:
    """deltalake's own change feed of the same range: the oracle."""
    reader = DeltaTable(str(lab.tables["events"])).load_cdf(
        starting_version=start, ending_version=end
    )
    return change_rows(pa.table(reader).to_pandas())


@pytest.mark.parametrize("use_delta_format", FORMATS)
def test_changes_all_commit_kinds(lab: SharingLab, use_delta_format: bool | None) -> None:
    url = lab.url("alice", "retail_share", "core", "events")
    df = delta_sharing.load_table_changes_as_pandas(
        url, starting_version=0, use_delta_format=use_delta_format
    )
    assert list(df.columns)[-3:] == ["_change_type", "_commit_version", "_commit_timestamp"]
    got = change_rows(df)
    assert got == local_changes(lab, 0)
    kinds = {(r[4], r[3]) for r in got}
    assert (1, "insert") in kinds  # plain append: add lines
    assert {(2, "update_preimage"), (2, "update_postimage")} <= kinds  # UPDATE: cdc files
    assert (3, "delete") in kinds  # DELETE
    assert {(4, "update_preimage"), (4, "update_postimage"), (4, "insert")} <= kinds  # MERGE


@pytest.mark.parametrize("use_delta_format", FORMATS)
def test_changes_version_range(lab: SharingLab, use_delta_format: bool | None) -> None:
    url = lab.url("alice", "retail_share", "core", "events")
    df = delta_sharing.load_table_changes_as_pandas(
        url, starting_version=2, ending_version=3, use_delta_format=use_delta_format
    )
    assert change_rows(df) == local_changes(lab, 2, 3)
    assert set(df["_commit_version"].astype(int)) == {2, 3}


def test_changes_commit_timestamps(lab: SharingLab, events_ts: dict[int, int]) -> None:
    url = lab.url("alice", "retail_share", "core", "events")
    df = delta_sharing.load_table_changes_as_pandas(url, starting_version=0, use_delta_format=False)
    by_version = df.groupby("_commit_version")["_commit_timestamp"].unique()
    stamps = {}
    for version, values in by_version.items():
        assert len(values) == 1, "one timestamp per commit"
        stamps[int(version)] = int(values[0])
    assert sorted(stamps) == [0, 1, 2, 3, 4]
    assert [stamps[v] for v in range(5)] == sorted(stamps[v] for v in range(5))
    for version, stamp in stamps.items():
        assert abs(stamp - events_ts[version]) < 5000
    # The timestamps the server reports resolve back to their versions.
    for version in (1, 3):
        resp = lab.changes(
            "retail_share", "core", "events", f"startingTimestamp={iso_ms(stamps[version])}"
        )
        assert resp.version == version


@pytest.mark.parametrize("use_delta_format", FORMATS)
def test_changes_by_timestamp(
    lab: SharingLab, events_ts: dict[int, int], use_delta_format: bool | None
) -> None:
    url = lab.url("alice", "retail_share", "core", "events")
    df = delta_sharing.load_table_changes_as_pandas(
        url,
        starting_timestamp=iso_ms(events_ts[2]),
        ending_timestamp=iso_ms(events_ts[4] - 1),
        use_delta_format=use_delta_format,
    )
    assert change_rows(df) == local_changes(lab, 2, 3)


def test_changes_raw_lines(lab: SharingLab) -> None:
    resp = lab.changes("retail_share", "core", "events", "startingVersion=0&endingVersion=4")
    assert resp.version == 0
    assert [next(iter(x)) for x in resp.lines[:2]] == ["protocol", "metaData"]
    kinds = {(next(iter(x)), next(iter(x.values()))["version"]) for x in resp.lines[2:]}
    # Appends are add lines; commits with cdc files give only cdf lines (their add/remove are ignored).
    assert kinds == {("add", 0), ("add", 1), ("cdf", 2), ("cdf", 3), ("cdf", 4)}
    for line in resp.lines[2:]:
        action = next(iter(line.values()))
        assert {"url", "id", "partitionValues", "size", "timestamp", "version"} <= set(action)
    # Historical metaData is only sent when asked for.
    assert not [x for x in resp.lines[2:] if "metaData" in x]


def test_changes_boolean_flags_case_insensitive(lab: SharingLab) -> None:
    for value in ("True", "true", "False", "FALSE"):
        resp = lab.changes(
            "retail_share", "core", "events", f"startingVersion=1&includeHistoricalMetadata={value}"
        )
        assert resp.version == 1


def test_changes_end_beyond_latest_is_clamped(lab: SharingLab) -> None:
    resp = lab.changes("retail_share", "core", "events", "startingVersion=3&endingVersion=99")
    assert {next(iter(x.values()))["version"] for x in resp.lines[2:]} == {3, 4}


def test_changes_delta_format_lines(lab: SharingLab) -> None:
    resp = lab.changes(
        "retail_share",
        "core",
        "events",
        "startingVersion=1&includeHistoricalMetadata=true",
        capabilities="responseformat=delta;readerfeatures=deletionvectors,columnmapping",
    )
    assert "responseformat=delta" in resp.headers["delta-sharing-capabilities"]
    meta = resp.lines[1]["metaData"]
    assert meta["version"] <= 1
    files = resp.files
    assert files
    actions = {next(iter(f["deltaSingleAction"])) for f in files}
    assert actions <= {"add", "remove", "cdc"} and "cdc" in actions
    for f in files:
        assert "version" in f and "timestamp" in f
        action = next(iter(f["deltaSingleAction"].values()))
        assert "X-Amz-Signature=" in action["path"]


def test_changes_respect_partition_filter(lab: SharingLab) -> None:
    for who, region in (("alice", "emea"), ("bob", "amer")):
        url = lab.url(who, "regional_share", "regional", "events")
        df = delta_sharing.load_table_changes_as_pandas(url, starting_version=0)
        assert len(df) > 0
        assert set(df["region"]) == {region}
        expected = [r for r in local_changes(lab, 0) if r[1] == region]
        assert change_rows(df) == expected
        raw = lab.changes(
            "regional_share", "regional", "events", "startingVersion=0", recipient=who
        )
        for line in raw.lines[2:]:
            assert next(iter(line.values()))["partitionValues"]["region"] == region


def test_cdf_must_be_enabled_over_the_whole_range(lab: SharingLab, tmp_path: Path) -> None:
    """v0 without CDF, v1 enables it, v2 update (cdc files), v3 another metadata change (protocol §4)."""
    from deltalake import write_deltalake

    path = tmp_path / "late_cdf"
    write_deltalake(str(path), pa.table({"id": pa.array([1, 2], pa.int64()), "v": ["a", "b"]}))
    DeltaTable(str(path)).alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    DeltaTable(str(path)).update(predicate="id = 1", updates={"v": "'x'"})
    DeltaTable(str(path)).alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 60 days"}
    )
    share, who = lab.share_table(path)

    resp = lab.get(f"/shares/{share}/schemas/s/tables/t/changes?startingVersion=0", recipient=who)
    assert resp.status_code == 400, resp.text
    assert "change data was not recorded for version" in resp.json()["message"]

    plain = lab.changes(share, "s", "t", "startingVersion=1", recipient=who)
    assert {(next(iter(x)), next(iter(x.values()))["version"]) for x in plain.lines[2:]} == {
        ("cdf", 2)
    }
    hist = lab.changes(
        share, "s", "t", "startingVersion=1&includeHistoricalMetadata=true", recipient=who
    )
    metas = [x["metaData"] for x in hist.lines[2:] if "metaData" in x]
    assert [m["version"] for m in metas] == [3]
    url = f"{lab.profiles[who]}#{share}.s.t"
    for fmt in FORMATS:
        df = delta_sharing.load_table_changes_as_pandas(
            url, starting_version=1, use_delta_format=fmt
        )
        assert sorted(df["_change_type"]) == ["update_postimage", "update_preimage"]
        assert set(df["_commit_version"].astype(int)) == {2}


def test_start_version_of_the_share_entry(lab: SharingLab) -> None:
    """A share entry ``start_version`` is the lower bound of history for recipients."""
    share, who = lab.share_table(lab.tables["events"], start_version=2)
    resp = lab.get(f"/shares/{share}/schemas/s/tables/t/changes?startingVersion=1", recipient=who)
    assert resp.status_code == 400
    assert "since version 2" in resp.json()["message"]
    ok = lab.changes(share, "s", "t", "startingVersion=2", recipient=who)
    assert {next(iter(x.values()))["version"] for x in ok.lines[2:]} == {2, 3, 4}
    streaming = lab.post(
        f"/shares/{share}/schemas/s/tables/t/query", {"startingVersion": 1}, recipient=who
    )
    assert streaming.status_code == 400


def test_schema_evolution(lab: SharingLab, tmp_path: Path) -> None:
    """A column added at v1 (schema merge): time travel shows each version's schema; CDF spans both."""
    from deltalake import write_deltalake

    path = tmp_path / "evolving"
    write_deltalake(
        str(path),
        pa.table({"id": pa.array([1, 2], pa.int64())}),
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    write_deltalake(
        str(path),
        pa.table({"id": pa.array([3], pa.int64()), "note": pa.array(["new"], pa.string())}),
        mode="append",
        schema_mode="merge",
    )
    share, who = lab.share_table(path)
    url = f"{lab.profiles[who]}#{share}.s.t"
    for fmt in FORMATS:
        old = delta_sharing.load_as_pandas(url, version=0, use_delta_format=fmt)
        assert list(old.columns) == ["id"] and sorted(old["id"]) == [1, 2]
        new = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert list(new.columns) == ["id", "note"]
        assert sorted(
            zip(new["id"], new["note"].where(new["note"].notna(), None), strict=True)
        ) == [
            (1, None),
            (2, None),
            (3, "new"),
        ]
        if fmt:
            # delta-kernel 0.22 (the client's delta reader) refuses CDF ranges whose start and end
            # schemas differ ("Start and end version schemas are different"): a client limitation.
            # A range within one schema works.
            after = delta_sharing.load_table_changes_as_pandas(
                url, starting_version=1, use_delta_format=True
            )
            assert after[["id", "note", "_change_type"]].values.tolist() == [[3, "new", "insert"]]
            continue
        changes = delta_sharing.load_table_changes_as_pandas(
            url, starting_version=0, use_delta_format=fmt
        )
        assert sorted(zip(changes["id"], changes["_commit_version"], strict=True)) == [
            (1, 0),
            (2, 0),
            (3, 1),
        ]
        assert set(changes["_change_type"]) == {"insert"}
    meta = lab.get(f"/shares/{share}/schemas/s/tables/t/metadata?version=0", recipient=who)
    schema = json.loads(json.loads(meta.text.splitlines()[1])["metaData"]["schemaString"])
    assert [f["name"] for f in schema["fields"]] == ["id"]
    hist = lab.changes(
        share, "s", "t", "startingVersion=0&includeHistoricalMetadata=true", recipient=who
    )
    assert [x["metaData"]["version"] for x in hist.lines[2:] if "metaData" in x] == [1]
