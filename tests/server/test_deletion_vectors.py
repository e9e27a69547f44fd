"""Deletion vectors on disk: served through signed URLs (``storageType "p"``), read by the official
client in delta format, refused cleanly (400, not a client crash) in parquet format."""

from __future__ import annotations

from urllib.parse import urlsplit

import delta_sharing
import pytest
import requests

from .conftest import SharingLab, build_plain_table
from .dvtable import delete_with_dv

DELTA_CAPS = "responseformat=delta;readerfeatures=deletionvectors,columnmapping,timestampntz"


@pytest.fixture(scope="module")
def dv_table(lab: SharingLab) -> tuple[str, str, set[int]]:
    name = lab.unique("dv")
    path = lab.home / "data" / "test" / name
    build_plain_table(path, rows=10)
    delete_with_dv(path, [0, 3, 7])  # rows k = 0, 3, 7 of the one data file
    share, who = lab.share_table(path, history=True)
    return share, who, {1, 2, 4, 5, 6, 8, 9}


def test_dv_descriptor_is_a_signed_url(
    lab: SharingLab, dv_table: tuple[str, str, set[int]]
) -> None:
    share, who, _ = dv_table
    resp = lab.query(share, "s", "t", recipient=who, capabilities=DELTA_CAPS)
    add = resp.files[0]["deltaSingleAction"]["add"]
    dv = add["deletionVector"]
    assert dv["storageType"] == "p" and dv["cardinality"] == 3
    url = dv["pathOrInlineDv"]
    assert urlsplit(url).path.startswith("/delta-sharing/files/")
    blob = requests.get(url, timeout=10)
    assert blob.status_code == 200 and blob.content[:1] == b"\x01"  # the DV file, version byte 1
    # the same signature does not open another path, and the DV URL dies with the access
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(tampered, timeout=10).status_code == 403


def test_official_client_reads_dv_table_in_delta_format(
    lab: SharingLab, dv_table: tuple[str, str, set[int]]
) -> None:
    share, who, expected = dv_table
    frame = delta_sharing.load_as_pandas(lab.url(who, share, "s", "t"), use_delta_format=True)
    assert set(frame["k"]) == expected


def test_dv_table_is_refused_in_parquet_format(
    lab: SharingLab, dv_table: tuple[str, str, set[int]]
) -> None:
    share, who, _ = dv_table
    resp = lab.post(f"/shares/{share}/schemas/s/tables/t/query", {}, recipient=who)
    assert resp.status_code == 400
    body = resp.json()
    assert body["errorCode"] == "UNSUPPORTED_OPERATION" and "delta" in body["message"]
    with pytest.raises(requests.HTTPError) as info:  # the client asked for parquet explicitly
        delta_sharing.load_as_pandas(lab.url(who, share, "s", "t"), use_delta_format=False)
    assert info.value.response.status_code == 400
    # auto mode (no choice given) negotiates delta and reads it
    assert len(delta_sharing.load_as_pandas(lab.url(who, share, "s", "t"))) == 7


def test_dv_in_streaming_lines(lab: SharingLab, dv_table: tuple[str, str, set[int]]) -> None:
    """``/query`` with ``startingVersion`` (the per-commit lines, shared with ``/changes``)."""
    share, who, _ = dv_table
    resp = lab.query(
        share, "s", "t", {"startingVersion": 1}, recipient=who, capabilities=DELTA_CAPS
    )
    adds = [f["deltaSingleAction"]["add"] for f in resp.files if "add" in f["deltaSingleAction"]]
    assert adds and adds[0]["deletionVector"]["storageType"] == "p"
    assert requests.get(adds[0]["deletionVector"]["pathOrInlineDv"], timeout=10).status_code == 200
