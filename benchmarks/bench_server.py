"""Benchmark of the sharelab Delta Sharing server (issue 3): figures and ratios side by side, in one run.

Not a test: it prints a table and exits 0 whatever the figures are (``--strict`` exits 1 when a target is
missed). It builds its own lab home in a temporary directory, starts its own server on a free loopback
port with ``helpers.server.start`` and stops it and deletes everything at the end.

Measured (medians over ``--reps`` repetitions, after one warm-up):

1. the official client's ``load_as_pandas`` of a 2,000,000-row shared table, in parquet and in delta
   format, vs deltalake's local ``DeltaTable(path).to_pandas()`` of the same table (target <= 3x);
2. signed-URL download throughput of the same table's files vs reading the same files from disk
   (target >= 0.5x; both warm: the files are in the page cache);
3. ``POST /query`` of a 10,000-file table (whole response read) vs deltalake loading the same snapshot and
   listing its files (target <= 2x);
4. 16 concurrent recipients (one process and one token each) reading a shared table with the official
   client for 30 s: reads/s, MB/s, p50/p99 latency of one read, errors (target 0 errors).

Run: ``.venv/bin/python benchmarks/bench_server.py`` (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BIG_ROWS = 2_000_000
BIG_FILES = 8
MANY_FILES = 10_000
CONCURRENT_ROWS = 100_000


# ----------------------------------------------------------------------------------------- set-up
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_big_table(path: Path, rows: int, files: int, seed: int = 42) -> None:
    """``rows`` rows in ``files`` appends (one parquet file each); UTC timestamps, a few column types."""
    from deltalake import write_deltalake

    rng = np.random.default_rng(seed)
    per = rows // files
    regions = np.array(["emea", "amer", "apac", "latam"])
    start = np.datetime64("2024-01-01T00:00:00", "us")
    for i in range(files):
        ids = np.arange(i * per, (i + 1) * per, dtype=np.int64)
        table = pa.table(
            {
                "id": ids,
                "region": pa.array(regions[rng.integers(0, 4, per)]),
                "amount": rng.normal(100.0, 25.0, per).round(2),
                "quantity": rng.integers(1, 50, per, dtype=np.int32),
                "sku": pa.array([f"SKU-{x:06d}" for x in rng.integers(0, 50_000, per)]),
                "ts": pa.array(start + ids * 1_000_000, pa.timestamp("us", tz="UTC")),
            }
        )
        write_deltalake(str(path), table, mode="append")


def write_many_files_table(path: Path, files: int) -> None:
    """One commit of ``files`` one-row files (one partition value each)."""
    from deltalake import write_deltalake

    table = pa.table(
        {
            "part": pa.array(np.arange(files, dtype=np.int64)),
            "value": pa.array(np.arange(files, dtype=np.float64)),
        }
    )
    write_deltalake(str(path), table, partition_by=["part"])


@dataclass
class Lab:
    home: Path
    endpoint: str
    profiles: dict[str, Path]
    tables: dict[str, Path]


def build_lab(home: Path) -> Lab:
    from helpers.catalog import Catalog

    data = home / "data" / "bench" / "s"
    tables = {"big": data / "big", "many": data / "many", "medium": data / "medium"}
    t0 = time.perf_counter()
    write_big_table(tables["big"], BIG_ROWS, BIG_FILES)
    write_big_table(tables["medium"], CONCURRENT_ROWS, 2, seed=7)
    write_many_files_table(tables["many"], MANY_FILES)
    print(f"  tables written in {time.perf_counter() - t0:.1f}s", flush=True)

    catalog = Catalog(home / "catalog.db")
    catalog.create_share("bench")
    for name, path in tables.items():
        catalog.register_table(f"bench.s.{name}", str(path))
        catalog.add_table_to_share("bench", f"bench.s.{name}", alias=f"s.{name}")
    return Lab(home=home, endpoint="", profiles={}, tables=tables)


def add_recipients(lab: Lab, count: int) -> None:
    from helpers.catalog import Catalog
    from helpers.profiles import profile_dict, write_profile

    catalog = Catalog(lab.home / "catalog.db")
    for i in range(count):
        name = f"r{i:02d}"
        catalog.create_recipient(name)
        catalog.grant("bench", name)
        issued = catalog.issue_token(name)
        lab.profiles[name] = write_profile(
            lab.home / "profiles" / f"{name}.share", profile_dict(lab.endpoint, issued)
        )


# ------------------------------------------------------------------------------------ measuring
def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def paired(
    ours: Callable[[], Any], base: Callable[[], Any], reps: int, warmup: int = 1
) -> tuple[float, float, float]:
    """Alternate the two measures rep by rep, so both see the same machine load.

    :returns: (median time of ``ours``, median time of ``base``, median of the per-rep ratios).
    """
    for _ in range(warmup):
        base()
        ours()
    a: list[float] = []
    b: list[float] = []
    for _ in range(reps):
        t = time.perf_counter()
        base()
        b.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
    return median(a), median(b), median([x / y for x, y in zip(a, b, strict=True)])


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@dataclass
class Row:
    what: str
    ours: str
    baseline: str
    ratio: float | None
    target: str
    ok: bool | None


def bench_load(lab: Lab, reps: int) -> list[Row]:
    import delta_sharing
    from deltalake import DeltaTable

    url = f"{lab.profiles['r00']}#bench.s.big"
    path = str(lab.tables["big"])
    rows = []
    for label, fmt in (("parquet", False), ("delta", True)):
        frame = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert len(frame) == BIG_ROWS, (label, len(frame))
        shared, local, ratio = paired(
            lambda fmt=fmt: delta_sharing.load_as_pandas(url, use_delta_format=fmt),
            lambda: DeltaTable(path).to_pandas(),
            reps,
        )
        rows.append(
            Row(
                f"load_as_pandas 2M rows ({label})",
                f"{shared:.2f} s",
                f"{local:.2f} s deltalake",
                ratio,
                "<= 3x",
                ratio <= 3,
            )
        )
    return rows


def bench_download(lab: Lab, reps: int) -> list[Row]:
    from concurrent.futures import ThreadPoolExecutor

    session = requests.Session()
    token = json.loads(lab.profiles["r00"].read_text())["bearerToken"]
    resp = session.post(
        f"{lab.endpoint}shares/bench/schemas/s/tables/big/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    resp.raise_for_status()
    files = [json.loads(line)["file"] for line in resp.text.splitlines()[2:]]
    total = sum(f["size"] for f in files)
    from deltalake import DeltaTable

    local_files = [p.replace("file://", "") for p in DeltaTable(str(lab.tables["big"])).file_uris()]
    assert sum(os.path.getsize(p) for p in local_files) == total

    def download(url: str) -> int:
        """GET one signed URL with the leanest Python client (http.client into a reused buffer).

        The aim is to measure the server, not the client: requests/urllib3 add ~30% of overhead.
        """
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        buf = memoryview(bytearray(1 << 20))
        n = 0
        try:
            conn.request("GET", f"{parts.path}?{parts.query}")
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            while got := resp.readinto(buf):
                n += got
        finally:
            conn.close()
        return n

    def http_all() -> None:
        assert sum(download(f["url"]) for f in files) == total

    def disk_all() -> None:
        n = 0
        for p in local_files:
            with open(p, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    n += len(chunk)
        assert n == total

    def disk_direct() -> None:
        """Read with O_DIRECT: from the device, bypassing the page cache (Linux, not tmpfs)."""
        import mmap

        buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT requires
        n = 0
        for p in local_files:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
            try:
                while got := os.readv(fd, [buf]):
                    n += got
            finally:
                os.close(fd)
        assert n == total

    def http_parallel() -> None:
        with ThreadPoolExecutor(4) as pool:
            got = pool.map(lambda f: download(f["url"]), files)
            assert sum(got) == total

    mb = total / 1e6
    t_http, t_disk, r_disk = paired(http_all, disk_all, reps)
    http_mbs, disk = mb / t_http, mb / t_disk
    par = mb / median(timed(http_parallel, reps))
    try:
        t_http2, t_direct, r_direct = paired(http_all, disk_direct, reps)
        direct: float | None = mb / t_direct
    except OSError:  # no O_DIRECT here (tmpfs, macOS)
        direct = None

    # Small-request latency: what every one of the client's GET/HEAD/Range requests pays.
    small = files[0]["url"]
    lat = (
        median(timed(lambda: session.get(small, headers={"Range": "bytes=0-3"}, timeout=10), 30))
        * 1000
    )
    head = median(timed(lambda: session.head(small, timeout=10), 30)) * 1000
    return [
        Row(
            f"download {len(files)} files, {mb:.0f} MB (1 stream)",
            f"{http_mbs:.0f} MB/s",
            f"{disk:.0f} MB/s page cache",
            1 / r_disk,
            ">= 0.5x",
            1 / r_disk >= 0.5,
        ),
        *(
            []
            if direct is None
            else [
                Row(
                    "download (1 stream) vs uncached disk read",
                    f"{mb / t_http2:.0f} MB/s",
                    f"{direct:.0f} MB/s O_DIRECT",
                    1 / r_direct,
                    ">= 0.5x",
                    1 / r_direct >= 0.5,
                )
            ]
        ),
        Row(
            "download, 4 parallel streams",
            f"{par:.0f} MB/s",
            f"{disk:.0f} MB/s page cache",
            par / disk,
            "(info)",
            None,
        ),
        Row(
            "latency of a 4-byte Range GET / a HEAD",
            f"{lat:.1f} / {head:.1f} ms",
            "",
            None,
            "(info)",
            None,
        ),
    ]


def bench_query(lab: Lab, reps: int) -> list[Row]:
    from deltalake import DeltaTable

    session = requests.Session()
    token = json.loads(lab.profiles["r00"].read_text())["bearerToken"]
    url = f"{lab.endpoint}shares/bench/schemas/s/tables/many/query"
    headers = {"Authorization": f"Bearer {token}"}

    expected_lines = [MANY_FILES + 2]

    def query() -> None:
        r = session.post(url, json={}, headers=headers, timeout=120)
        r.raise_for_status()
        assert r.text.count("\n") == expected_lines[0]

    t = time.perf_counter()
    query()
    cold = time.perf_counter() - t
    path = str(lab.tables["many"])

    def local() -> None:
        dt = DeltaTable(path)
        assert len(dt.file_uris()) == MANY_FILES
        dt.get_add_actions(flatten=True)

    ours, base, ratio = paired(query, local, max(reps, 5))

    # A live table: after each new commit the server must see the new version (no stale cache).
    from deltalake import write_deltalake

    fresh_ours: list[float] = []
    fresh_base: list[float] = []
    for i in range(max(reps, 3)):
        extra = pa.table({"part": pa.array([MANY_FILES + i], pa.int64()), "value": pa.array([0.0])})
        write_deltalake(path, extra, mode="append", partition_by=["part"])
        expected_lines[0] += 1
        t = time.perf_counter()
        query()
        fresh_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        dt = DeltaTable(path)
        assert len(dt.file_uris()) == expected_lines[0] - 2
        dt.get_add_actions(flatten=True)
        fresh_base.append(time.perf_counter() - t)
    fresh_ratio = median([a / b for a, b in zip(fresh_ours, fresh_base, strict=True)])
    return [
        Row(
            f"/query {MANY_FILES:,}-file table (warm)",
            f"{ours * 1000:.0f} ms",
            f"{base * 1000:.0f} ms deltalake",
            ratio,
            "<= 2x",
            ratio <= 2,
        ),
        Row(
            f"/query {MANY_FILES:,}-file table (first request)",
            f"{cold * 1000:.0f} ms",
            f"{base * 1000:.0f} ms deltalake",
            cold / base,
            "(info)",
            None,
        ),
        Row(
            f"/query {MANY_FILES:,}-file table after a new commit",
            f"{median(fresh_ours) * 1000:.0f} ms",
            f"{median(fresh_base) * 1000:.0f} ms deltalake",
            fresh_ratio,
            "(info)",
            None,
        ),
    ]


def _reader(profile: str, table: str, seconds: float, start_at: float, out: Any) -> None:
    """One recipient: read the table with the official client in a loop until the time is up."""
    import delta_sharing

    while time.time() < start_at:
        time.sleep(0.01)
    url = f"{profile}#bench.s.{table}"
    latencies: list[float] = []
    errors: list[str] = []
    rows = 0
    end = start_at + seconds
    while time.time() < end:
        t = time.perf_counter()
        try:
            frame = delta_sharing.load_as_pandas(url, use_delta_format=False)
            rows += len(frame)
            latencies.append(time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
    out.put((latencies, errors, rows))


def bench_concurrent(lab: Lab, clients: int, seconds: float) -> list[Row]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 8  # give every process time to import pandas & co
    procs = [
        ctx.Process(
            target=_reader, args=(str(lab.profiles[f"r{i:02d}"]), "medium", seconds, start_at, out)
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    latencies = sorted(x for r in results for x in r[0])
    errors = [e for r in results for e in r[1]]
    rows = sum(r[2] for r in results)
    size = sum(os.path.getsize(p) for p in lab.tables["medium"].glob("*.parquet"))
    reads = len(latencies)
    p50 = latencies[len(latencies) // 2] if latencies else float("nan")
    p99 = (
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan")
    )
    out_rows = [
        Row(
            f"{clients} recipients x {seconds:.0f}s, load_as_pandas of {CONCURRENT_ROWS:,} rows",
            f"{reads / seconds:.2f} reads/s, {reads * size / seconds / 1e6:.1f} MB/s, {rows / seconds:,.0f} rows/s",
            "",
            None,
            "(info)",
            None,
        ),
        Row(
            "  latency of one read p50 / p99", f"{p50:.2f} / {p99:.2f} s", "", None, "(info)", None
        ),
        Row("  errors", str(len(errors)), "", None, "0", not errors),
    ]
    for e in sorted(set(errors))[:5]:
        print(f"  error sample: {e}")
    return out_rows


# ---------------------------------------------------------------------------------------- output
def print_table(rows: list[Row]) -> None:
    head = ("measure", "sharelab", "baseline", "ratio", "target", "ok")
    cells = [
        (
            r.what,
            r.ours,
            r.baseline,
            "" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            "" if r.ok is None else ("yes" if r.ok else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print(line)
    for c in cells:
        print("  ".join(str(x).ljust(w) for x, w in zip(c, widths, strict=True)))
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reps", type=int, default=3, help="repetitions per measure (median; default 3)"
    )
    parser.add_argument(
        "--clients", type=int, default=16, help="concurrent recipients (default 16)"
    )
    parser.add_argument(
        "--seconds", type=float, default=30, help="duration of the concurrent run (default 30)"
    )
    parser.add_argument(
        "--only",
        choices=["load", "download", "query", "concurrent"],
        action="append",
        help="run only these measures (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary lab home")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    only = set(args.only or ["load", "download", "query", "concurrent"])

    from helpers import server as sharing_server

    home = Path(tempfile.mkdtemp(prefix="sharelab-bench-"))
    os.environ["SHARELAB_HOME"] = str(home)
    rows: list[Row] = []
    started = False
    try:
        print(f"lab home {home}", flush=True)
        lab = build_lab(home)
        state = sharing_server.start(home, host="127.0.0.1", port=free_port())
        started = True
        lab.endpoint = state["endpoint"]
        add_recipients(lab, max(args.clients, 1))
        print(f"server pid {state['pid']} at {lab.endpoint}; cpus: {os.cpu_count()}", flush=True)
        if "load" in only:
            print("measuring load_as_pandas ...", flush=True)
            rows += bench_load(lab, args.reps)
        if "download" in only:
            print("measuring downloads ...", flush=True)
            rows += bench_download(lab, args.reps)
        if "query" in only:
            print("measuring /query ...", flush=True)
            rows += bench_query(lab, args.reps)
        if "concurrent" in only:
            print(
                f"measuring {args.clients} concurrent recipients for {args.seconds:.0f}s ...",
                flush=True,
            )
            rows += bench_concurrent(lab, args.clients, args.seconds)
    finally:
        if started:
            sharing_server.stop(home)
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    print()
    print_table(rows)
    missed = [r.what for r in rows if r.ok is False]
    if missed:
        print("targets missed: " + "; ".join(missed))
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
