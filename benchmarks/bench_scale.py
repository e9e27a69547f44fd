"""Benchmark of the provider beyond one process (issue 20): figures and ratios side by side, in one run.

Not a test: it prints a table and exits 0. It builds its own lab home and tables in a temporary directory,
starts its own servers on free loopback ports (and, for the PostgreSQL row, a throw-away cluster from
Debian's packages, as the tests do) and removes everything at the end. The load average is printed with
the figures: clients and servers share the machine's cores.

1. tables of 1, 8 and 64 files (200,000 rows): the official client's ``load_as_pandas``, the lean loader
   (:func:`helpers.recipient.fast_load`) and deltalake's local read, medians; server CPU seconds per load;
2. ``POST /query`` throughput at 64 concurrent keep-alive connections (an asyncio client), 1 worker vs 2;
3. ``Catalog.authenticate`` and ``/query`` latency, PostgreSQL catalog vs SQLite.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltalake import DeltaTable, write_deltalake  # noqa: E402

from helpers.catalog import open_catalog  # noqa: E402
from helpers.procs import free_port  # noqa: E402
from helpers.provider import Provider  # noqa: E402
from helpers.recipient import fast_load  # noqa: E402
from helpers.server import start, stop  # noqa: E402

ROWS = 200_000


def median_time(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def server_cpu(pid: int) -> float:
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def make_tables(root: Path, home: Path) -> dict[int, Path]:
    tables = {}
    sql = ["CREATE SHARE s"]
    for n in (1, 8, 64):
        path = root / f"t{n}"
        per = ROWS // n
        for i in range(n):
            frame = pd.DataFrame(
                {
                    "id": range(i * per, (i + 1) * per),
                    "amount": [float(x % 997) for x in range(per)],
                    "city": [f"city_{x % 50}" for x in range(per)],
                }
            )
            write_deltalake(str(path), frame, mode="append")
        tables[n] = path
        sql += [f"CREATE TABLE b.sch.t{n} LOCATION '{path}'", f"ALTER SHARE s ADD TABLE b.sch.t{n}"]
    sql += ["CREATE RECIPIENT r", "GRANT SELECT ON SHARE s TO RECIPIENT r"]
    Provider(home).sql(";".join(sql))
    return tables


def profile_for(home: Path, state: dict[str, Any], path: Path) -> Path:
    token = open_catalog(home).issue_token("r").token
    path.write_text(
        json.dumps(
            {"shareCredentialsVersion": 1, "endpoint": state["endpoint"], "bearerToken": token}
        )
    )
    return path


async def _hammer(url: str, token: str, seconds: float, conns: int) -> tuple[int, int]:
    import aiohttp

    ok = errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=conns)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> None:
            nonlocal ok, errors
            while time.monotonic() < deadline:
                try:
                    async with session.post(url, json={}) as resp:
                        await resp.read()
                        if resp.status == 200:
                            ok += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(conns)))
    return ok, errors


def query_throughput(home: Path, workers: int, seconds: float) -> tuple[float, int]:
    state = start(home, port=free_port(), workers=workers)
    try:
        token = open_catalog(home).issue_token("r").token
        url = state["endpoint"] + "shares/s/schemas/sch/tables/t8/query"
        asyncio.run(_hammer(url, token, 1.0, 64))  # warm-up
        ok, errors = asyncio.run(_hammer(url, token, seconds, 64))
        return ok / seconds, errors
    finally:
        stop(home)


def latencies(home: Path, reps: int) -> tuple[float, float]:
    cat = open_catalog(home)
    token = cat.issue_token("r").token
    auth = median_time(lambda: cat.authenticate(token), reps * 10) * 1e3
    state = start(home, port=free_port(), workers=1)
    try:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        url = state["endpoint"] + "shares/s/schemas/sch/tables/t8/query"
        q = median_time(lambda: s.post(url, json={}).raise_for_status(), reps) * 1e3
    finally:
        stop(home)
    return auth, q


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter load")
    a = ap.parse_args()
    reps = 2 if a.quick else 5
    seconds = 3.0 if a.quick else 8.0
    root = Path(tempfile.mkdtemp(prefix="sharelab-bench-scale-"))
    os.environ.pop("SHARELAB_CATALOG_URL", None)
    os.environ["SHARELAB_WORKERS"] = "1"
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, cores {os.cpu_count()}"
    )
    import delta_sharing

    try:
        home = root / "home"
        tables = make_tables(root, home)
        state = start(home, port=free_port(), workers=1)
        profile = profile_for(home, state, root / "r.share")
        print("\n1. load of a 200,000-row table (median s; ratio to the local read)")
        print(
            f"{'files':>6} {'local':>8} {'official':>9} {'ratio':>6} {'fast':>8} {'ratio':>6} {'srv CPU/load':>13}"
        )
        for n, path in tables.items():
            url = f"{profile}#s.sch.t{n}"
            local = median_time(lambda p=path: DeltaTable(str(p)).to_pandas(), reps)
            cpu0 = server_cpu(int(state["pid"]))
            official = median_time(lambda u=url: delta_sharing.load_as_pandas(u), reps)
            cpu_official = (server_cpu(int(state["pid"])) - cpu0) / (reps + 1)
            fast = median_time(lambda u=url: fast_load(u), reps)
            print(
                f"{n:>6} {local:>8.3f} {official:>9.3f} {official / local:>6.2f} {fast:>8.3f} "
                f"{fast / local:>6.2f} {cpu_official:>12.3f}s"
            )
        stop(home)
        print(f"\n2. POST /query (8-file table), 64 concurrent connections, {seconds:.0f} s")
        one, e1 = query_throughput(home, 1, seconds)
        two, e2 = query_throughput(home, 2, seconds)
        print(
            f"   1 worker: {one:8.0f} req/s ({e1} errors)   2 workers: {two:8.0f} req/s ({e2} errors)   ratio {two / one:.2f}"
        )
        print("\n3. catalog backends: authenticate (in process) and /query (HTTP), median ms")
        sa, sq = latencies(home, 50)
        row = f"   SQLite:     authenticate {sa:7.3f} ms   /query {sq:7.2f} ms"
        print(row)
        try:
            from tests.pg import postgres_cluster, skip_reason

            reason = skip_reason()
            if reason:
                print(f"   PostgreSQL: skipped ({reason})")
            else:
                with postgres_cluster() as cluster:
                    os.environ["SHARELAB_CATALOG_URL"] = cluster.url("bench")
                    pg_home = root / "pg-home"
                    Provider(pg_home).sql(
                        f"CREATE TABLE b.sch.t8 LOCATION '{tables[8]}'; CREATE SHARE s; "
                        "ALTER SHARE s ADD TABLE b.sch.t8; CREATE RECIPIENT r; "
                        "GRANT SELECT ON SHARE s TO RECIPIENT r"
                    )
                    pa_, pq_ = latencies(pg_home, 50)
                    os.environ.pop("SHARELAB_CATALOG_URL", None)
                print(
                    f"   PostgreSQL: authenticate {pa_:7.3f} ms   /query {pq_:7.2f} ms   "
                    f"ratios {pa_ / sa:.2f}x / {pq_ / sq:.2f}x"
                )
        finally:
            os.environ.pop("SHARELAB_CATALOG_URL", None)
        print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        with_home = root / "home"
        try:
            stop(with_home)
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
