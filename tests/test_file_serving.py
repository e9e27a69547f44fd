"""The signed file download path (helpers.server.files): HEAD, ranges, full streams, abandoned GETs.

A real ``sharelab serve`` subprocess on a loopback port serves a real Delta table of one ~12 MB file of
incompressible bytes. What the server *read* is measured from outside, by the ``rchar`` counter of its
process tree (``/proc/<pid>/io``: bytes passed to read/pread calls), so the test sees what a client that
leaves after the headers costs the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import delta_sharing
import pyarrow as pa
import pytest
import requests
from deltalake import DeltaTable, write_deltalake

from helpers.catalog import open_catalog
from helpers.provider import Provider
from tests.support import (
    RunningServer,
    blob_table,
    share_tables,
    start_server,
    stop_server,
    write_profile,
)

psutil = pytest.importorskip("psutil")

ROWS = 48
BLOB = 256 * 1024  # 48 x 256 KiB of random bytes: a ~12 MB parquet file that does not compress


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("files")
    data = blob_table(root / "blobs", ROWS, BLOB)
    home = root / "home"
    token = share_tables(home, {"lab.files.blobs": root / "blobs"})
    server = start_server(home, env={"SHARELAB_WORKERS": "1"})
    try:
        resp = requests.post(
            f"{server.endpoint}shares/s/schemas/files/tables/blobs/query",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        resp.raise_for_status()
        files = [json.loads(x)["file"] for x in resp.text.splitlines() if '"file"' in x]
        assert len(files) == 1
        yield {
            "server": server,
            "url": files[0]["url"],
            "bytes": data,
            "profile": write_profile(root / "r.share", server.endpoint, token),
            "home": home,
        }
    finally:
        stop_server(server)


def _read_chars(server: RunningServer) -> int:
    """Bytes the server's processes passed to read calls so far (after they settle)."""
    proc = psutil.Process(server.process.pid)

    def total() -> int:
        n = 0
        for p in (proc, *proc.children(recursive=True)):
            try:
                n += p.io_counters().read_chars
            except psutil.Error:
                pass
        return n

    last, stable_since = total(), time.monotonic()
    while time.monotonic() - stable_since < 0.4:
        time.sleep(0.1)
        now = total()
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


async def _abandon(url: str, times: int) -> list[int]:
    """GETs without a Range whose body is never read: what the official client's aiohttp does
    (``async with session.get(url) as r: r.headers``, then it closes the connection)."""
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(times):
            async with session.get(url) as resp:
                statuses.append(resp.status)
                assert int(resp.headers["Content-Length"]) > 0
    return statuses


def test_head_sends_headers_only(served: dict[str, Any]) -> None:
    head = requests.head(served["url"], timeout=10)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(served["bytes"])
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.content == b""
    before = _read_chars(served["server"])
    with requests.Session() as session:
        for _ in range(20):
            assert session.head(served["url"], timeout=10).status_code == 200
    assert _read_chars(served["server"]) - before < 20 * 16 * 1024  # the file is never read
    full = requests.get(served["url"], timeout=30)
    assert full.headers["ETag"] == head.headers["ETag"]
    assert full.headers["Last-Modified"] == head.headers["Last-Modified"]


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=0-3", 0, 4),
        ("bytes=-8", -8, None),  # the footer read of a parquet reader
        ("bytes=100-65635", 100, 65636),  # a 64 KiB read: one pread in the request's thread hop
        ("bytes=4096-", 4096, None),  # larger than SMALL_RANGE: streamed
        ("bytes=10-99999999999", 10, None),  # clipped to the file
    ],
)
def test_single_ranges(served: dict[str, Any], spec: str, start: int, end: int | None) -> None:
    data: bytes = served["bytes"]
    want = data[start:end]
    resp = requests.get(served["url"], headers={"Range": spec}, timeout=30)
    assert resp.status_code == 206, resp.text[:200]
    assert resp.content == want
    first = start if start >= 0 else len(data) + start
    assert resp.headers["Content-Range"] == f"bytes {first}-{first + len(want) - 1}/{len(data)}"
    assert int(resp.headers["Content-Length"]) == len(want)


def test_unusual_ranges_keep_their_answers(served: dict[str, Any]) -> None:
    data: bytes = served["bytes"]
    multi = requests.get(served["url"], headers={"Range": "bytes=0-3,8-11"}, timeout=10)
    assert multi.status_code == 206
    assert multi.headers["Content-Type"].startswith("multipart/byteranges")
    assert data[:4] in multi.content and data[8:12] in multi.content
    beyond = requests.get(served["url"], headers={"Range": f"bytes={len(data)}-"}, timeout=10)
    assert beyond.status_code == 416
    assert requests.get(served["url"], headers={"Range": "lines=1-2"}, timeout=10).status_code in (
        200,
        400,
    )
    etag = requests.head(served["url"], timeout=10).headers["ETag"]
    same = requests.get(served["url"], headers={"Range": "bytes=0-3", "If-Range": etag}, timeout=10)
    assert same.status_code == 206 and same.content == data[:4]
    stale = requests.get(
        served["url"], headers={"Range": "bytes=0-3", "If-Range": '"other"'}, timeout=30
    )
    assert stale.status_code == 200 and stale.content == data


def test_full_get_streams_the_file_and_the_counter_sees_it(served: dict[str, Any]) -> None:
    server = served["server"]
    before = _read_chars(server)
    resp = requests.get(served["url"], timeout=30)
    assert resp.status_code == 200 and resp.content == served["bytes"]
    assert _read_chars(server) - before >= len(served["bytes"])  # the measure below is real


def test_abandoned_get_is_not_read_to_the_end(served: dict[str, Any]) -> None:
    server = served["server"]
    size = len(served["bytes"])
    assert size > 10 * 1024 * 1024
    before = _read_chars(server)
    assert asyncio.run(_abandon(served["url"], 4)) == [200] * 4
    read = _read_chars(server) - before
    # each abandoned GET costs the few first chunks that loopback's socket buffers take before the
    # close is seen (up to about 0.9 MB on a loaded machine), never the 12 MB file (about 2.7 MB each
    # when the server read 1 MiB chunks ahead of a client that was gone)
    assert read < 4 * 1024 * 1024, read
    # and the server still answers on fresh connections
    assert requests.head(served["url"], timeout=10).status_code == 200


def test_revoked_token_denies_head_and_ranges_at_once(served: dict[str, Any]) -> None:
    cat = open_catalog(served["home"])
    Provider(served["home"]).sql(
        "CREATE RECIPIENT other; GRANT SELECT ON SHARE s TO RECIPIENT other"
    )
    token = cat.issue_token("other").token
    resp = requests.post(
        f"{served['server'].endpoint}shares/s/schemas/files/tables/blobs/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    url = next(json.loads(x)["file"]["url"] for x in resp.text.splitlines() if '"file"' in x)
    assert requests.head(url, timeout=10).status_code == 200
    assert requests.get(url, headers={"Range": "bytes=-8"}, timeout=10).status_code == 206
    assert cat.revoke_tokens("other") >= 1
    assert requests.head(url, timeout=10).status_code == 403
    assert requests.get(url, headers={"Range": "bytes=-8"}, timeout=10).status_code == 403
    assert requests.get(url, timeout=10).status_code == 403


def test_official_client_reads_the_table(served: dict[str, Any]) -> None:
    df = delta_sharing.load_as_pandas(f"{served['profile']}#s.files.blobs")
    assert sorted(df["id"]) == list(range(ROWS))


# ---- the number of files the client has to fetch -----------------------------------------------
def test_generated_tables_have_one_file_per_partition(tmp_path: Path) -> None:
    """The generators' layout: an unpartitioned table is one file, a partitioned one a file per
    partition value (never several small files per partition, whatever the commits)."""
    from helpers.datagen import generate

    home = tmp_path / "home"
    generate("retail", home=home, scale="small", progress=False)
    counts = {}
    for log in sorted((home / "data").rglob("_delta_log")):
        dt = DeltaTable(str(log.parent))
        parts = list(dt.metadata().partition_columns)
        files = dt.file_uris()
        if parts:
            values = {
                tuple(a[f"partition.{p}"] for p in parts)
                for a in pa.table(dt.get_add_actions(flatten=True)).to_pylist()
            }
            assert len(files) == len(values), (log.parent.name, len(files), len(values))
        else:
            assert len(files) == 1, (log.parent.name, len(files))
        counts[log.parent.name] = len(files)
    assert counts["customers"] == counts["products"] == 1
    # partitioned by month (order_month), not by day: the 14 days of March are one file, not 14
    assert counts["orders"] == counts["order_items"] == counts["inventory_snapshots"] == 1


def test_optimize_compacts_appended_files(tmp_path: Path) -> None:
    """Eight appends make eight files; ``OPTIMIZE`` leaves one, and the shared table's next /query
    lists one file (fewer requests for the official client)."""
    path = tmp_path / "appended"
    for i in range(8):
        write_deltalake(
            str(path),
            pa.table({"id": pa.array(range(i * 10, i * 10 + 10), pa.int64())}),
            mode="append",
        )
    home = tmp_path / "home"
    provider = Provider(home)
    provider.sql(f"CREATE TABLE lab.sch.appended LOCATION '{path}'")
    assert len(DeltaTable(str(path)).file_uris()) == 8
    provider.sql("OPTIMIZE lab.sch.appended")
    dt = DeltaTable(str(path))
    assert len(dt.file_uris()) == 1
    assert sorted(dt.to_pyarrow_table().column("id").to_pylist()) == list(range(80))
