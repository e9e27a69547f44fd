"""Benchmark of the provider beyond one process (issue 20): figures and ratios side by side, in one run.

Not a test: it prints a table and exits 0. It builds its own lab home and tables in a temporary directory,
starts its own servers on free loopback ports (and, for the PostgreSQL row, a throw-away cluster from
Debian's packages, as the tests do) and removes everything at the end. The load average is printed with
the figures: clients and servers share the machine's cores.

1. tables of 1, 8 and 64 files (200,000 rows): the official client's ``load_as_pandas``, the lean loader
   (:func:`helpers.recipient.fast_load`) and deltalake's local read, medians; server CPU seconds per load;
   the load average with each row (the loader alone, interleaved and against an older copy of it:
   ``benchmarks/bench_loader.py``);
2. ``POST /query`` throughput at 64 concurrent keep-alive connections (an asyncio client), 1 worker vs 2;
3. a burst of 32 recipients (one process and one token each) calling ``load_as_pandas`` on a 100,000-row
   table at the same moment: errors, p50/p99 of one read, the burst's wall time vs 32 sequential reads;
4. ``Catalog.authenticate`` and ``/query`` latency, PostgreSQL catalog vs SQLite: authenticate as a server
   process makes it (watching the access generation, :mod:`helpers.catalog.watch`) and not watched, the
   one-statement token lookup authenticate made before the access-generation cache and one ``SELECT 1``
   (the round-trip floor) side by side (``--only auth`` runs this section alone).

The official client against a static file server, requests per file, per-request cost and the
single-stream download vs nginx are in ``benchmarks/bench_files.py``.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--quick] [--burst N] [--only auth|load]``.
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
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltalake import DeltaTable, write_deltalake  # noqa: E402

from helpers.catalog import open_catalog  # noqa: E402
from helpers.catalog.watch import start_watch, stop_watch  # noqa: E402
from helpers.procs import free_port  # noqa: E402
from helpers.provider import Provider  # noqa: E402
from helpers.recipient import fast_load  # noqa: E402
from helpers.server import start, stop  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import server_cpu, write_file_tables  # noqa: E402

ROWS = 200_000
BURST_ROWS = 100_000


def median_time(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_tables(root: Path, home: Path) -> dict[int, Path]:
    tables, entries = write_file_tables(root, ROWS, (1, 8, 64))
    sql = ["CREATE SHARE s", *entries]
    burst_path = root / "burst"  # the burst's table: 100,000 rows in 4 files
    for i in range(4):
        per = BURST_ROWS // 4
        write_deltalake(
            str(burst_path),
            pd.DataFrame(
                {"id": range(i * per, (i + 1) * per), "v": [float(x) for x in range(per)]}
            ),
            mode="append",
        )
    sql += [
        f"CREATE TABLE b.sch.burst LOCATION '{burst_path}'",
        "ALTER SHARE s ADD TABLE b.sch.burst",
    ]
    sql += ["CREATE RECIPIENT r", "GRANT SELECT ON SHARE s TO RECIPIENT r"]
    Provider(home).sql(";".join(sql))
    return tables


def profile_for(home: Path, state: dict[str, Any], path: Path, recipient: str = "r") -> Path:
    token = open_catalog(home).issue_token(recipient).token
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


def _burst_reader(profile: str, start_at: float, out: Any) -> None:
    """One recipient of the burst: one ``load_as_pandas`` at ``start_at`` (wall clock)."""
    import delta_sharing

    while time.time() < start_at:
        time.sleep(0.002)
    t = time.perf_counter()
    try:
        rows = len(delta_sharing.load_as_pandas(f"{profile}#s.sch.burst"))
        out.put((time.perf_counter() - t, "" if rows == BURST_ROWS else f"{rows} rows"))
    except Exception as exc:  # noqa: BLE001 - counted and reported
        out.put((time.perf_counter() - t, f"{type(exc).__name__}: {exc}"[:200]))


def burst(home: Path, root: Path, clients: int) -> None:
    """``clients`` recipients reading the 100,000-row table at once vs one recipient ``clients`` times."""
    import multiprocessing as mp

    import delta_sharing

    workers = min(2, os.cpu_count() or 1)
    print(f"   server: {workers} workers")
    state = start(home, port=free_port(), workers=workers)
    try:
        Provider(home).sql(
            ";".join(
                f"CREATE RECIPIENT IF NOT EXISTS b{i}; GRANT SELECT ON SHARE s TO RECIPIENT b{i}"
                for i in range(clients)
            )
        )
        profiles = [profile_for(home, state, root / f"b{i}.share", f"b{i}") for i in range(clients)]
        url = f"{profiles[0]}#s.sch.burst"
        delta_sharing.load_as_pandas(url)  # warm-up
        t = time.perf_counter()
        for _ in range(clients):
            delta_sharing.load_as_pandas(url)
        sequential = time.perf_counter() - t
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        start_at = time.time() + 10  # every process has imported pandas & co by then
        procs = [ctx.Process(target=_burst_reader, args=(str(p), start_at, out)) for p in profiles]
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        wall = max(r[0] for r in results)
        for p in procs:
            p.join(timeout=30)
    finally:
        stop(home)
    times = sorted(r[0] for r in results)
    errors = [r[1] for r in results if r[1]]
    p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"   {clients} at once: p50 {p50:.2f} s  p99 {p99:.2f} s  (p99/p50 {p99 / p50:.2f}, target <= 2)  "
        f"errors {len(errors)}"
    )
    print(
        f"   burst wall {wall:.2f} s  vs {clients} sequential reads {sequential:.2f} s "
        f"(ratio {wall / sequential:.2f})"
    )
    for e in sorted(set(errors))[:3]:
        print(f"   error sample: {e}")


def _one_statement_lookup(cat: Any, token: str) -> Callable[[], Any]:
    """What ``authenticate`` ran on every call before the access-generation cache: the token's one
    statement (candidates by prefix joined with the recipient), for a side-by-side figure."""
    from helpers.catalog.tokens import TOKEN_PREFIX_CHARS, hash_token

    sql = (
        "SELECT t.token_hash AS tok_hash, t.expires_at AS tok_expires, t.revoked_at AS tok_revoked, "
        "r.* FROM tokens t JOIN recipients r ON r.id = t.recipient_id WHERE t.prefix = ?"
    )

    def lookup() -> Any:
        digest = hash_token(token)
        rows = cat.db.read_one(lambda c: c.execute(sql, (token[:TOKEN_PREFIX_CHARS],)).fetchall())
        return [r for r in rows if r["tok_hash"] == digest]

    return lookup


def latencies(home: Path, reps: int) -> dict[str, float]:
    """Median ms: authenticate (remembered under the access generation), the one-statement lookup it
    replaced, one ``SELECT 1`` (the backend's round-trip floor), and ``/query`` over HTTP."""
    cat = open_catalog(home)
    token = cat.issue_token("r").token
    lookup = _one_statement_lookup(cat, token)
    floor = lambda: cat.db.read_one(lambda c: c.execute("SELECT 1").fetchone())  # noqa: E731
    watched = open_catalog(home)  # as a server process does it (PostgreSQL: helpers.catalog.watch)
    start_watch(watched.db)
    time.sleep(0.5)  # its first lease
    out: dict[str, float] = {}
    for _ in range(3):  # interleaved rounds: the machine's load hits every figure alike
        for name, fn in (
            ("auth", lambda: watched.authenticate(token)),
            ("unwatched", lambda: cat.authenticate(token)),
            ("lookup", lookup),
            ("floor", floor),
        ):
            out.setdefault(name, 1e9)
            out[name] = min(out[name], median_time(fn, reps * 10) * 1e3)
    stop_watch(watched.db)
    state = start(home, port=free_port(), workers=1)
    try:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        url = state["endpoint"] + "shares/s/schemas/sch/tables/t8/query"
        out["query"] = median_time(lambda: s.post(url, json={}).raise_for_status(), reps) * 1e3
    finally:
        stop(home)
    return out


def _row(label: str, f: dict[str, float]) -> str:
    return (
        f"   {label:<11} authenticate {f['auth']:7.3f} ms (not watched {f['unwatched']:7.3f} ms; "
        f"one-statement lookup {f['lookup']:7.3f} ms; SELECT 1 floor {f['floor']:7.3f} ms)   "
        f"/query {f['query']:7.2f} ms"
    )


def backend_latencies(root: Path, home: Path, t8: Path) -> None:
    """Section 4: authenticate and /query on SQLite vs a throw-away PostgreSQL cluster."""
    print("\n4. catalog backends: authenticate (in process) and /query (HTTP), median ms")
    sq = latencies(home, 50)
    print(_row("SQLite:", sq))
    try:
        from tests.pg import postgres_cluster, skip_reason

        reason = skip_reason()
        if reason:
            print(f"   PostgreSQL: skipped ({reason})")
            return
        with postgres_cluster() as cluster:
            os.environ["SHARELAB_CATALOG_URL"] = cluster.url("bench")
            pg_home = root / "pg-home"
            Provider(pg_home).sql(
                f"CREATE TABLE b.sch.t8 LOCATION '{t8}'; CREATE SHARE s; "
                "ALTER SHARE s ADD TABLE b.sch.t8; CREATE RECIPIENT r; "
                "GRANT SELECT ON SHARE s TO RECIPIENT r"
            )
            pg = latencies(pg_home, 50)
            os.environ.pop("SHARELAB_CATALOG_URL", None)
        print(_row("PostgreSQL:", pg))
        print(
            f"   ratios PostgreSQL/SQLite: authenticate {pg['auth'] / sq['auth']:.2f}x (not watched "
            f"{pg['unwatched'] / sq['unwatched']:.2f}x; one-statement lookup "
            f"{pg['lookup'] / sq['lookup']:.2f}x; PostgreSQL's floor alone is "
            f"{pg['floor'] / sq['auth']:.2f}x SQLite's authenticate)   /query {pg['query'] / sq['query']:.2f}x"
        )
    finally:
        os.environ.pop("SHARELAB_CATALOG_URL", None)


def make_auth_tables(root: Path, home: Path) -> Path:
    """The 8-file table and the share section 4 needs (``--only auth``)."""
    path = root / "t8"
    per = ROWS // 8
    for i in range(8):
        write_deltalake(
            str(path), pd.DataFrame({"id": range(i * per, (i + 1) * per)}), mode="append"
        )
    Provider(home).sql(
        f"CREATE SHARE s; CREATE TABLE b.sch.t8 LOCATION '{path}'; ALTER SHARE s ADD TABLE b.sch.t8; "
        "CREATE RECIPIENT r; GRANT SELECT ON SHARE s TO RECIPIENT r"
    )
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter load")
    ap.add_argument("--burst", type=int, default=32, help="recipients of the burst (default 32)")
    ap.add_argument(
        "--only",
        choices=("all", "auth", "load"),
        default="all",
        help="auth: section 4 alone (authenticate); load: section 1 alone (the loads)",
    )
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
        if a.only == "auth":
            backend_latencies(root, home, make_auth_tables(root, home))
            print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            return 0
        tables = make_tables(root, home)
        state = start(home, port=free_port(), workers=1)
        profile = profile_for(home, state, root / "r.share")
        print("\n1. load of a 200,000-row table (median s; ratio to the local read)")
        print(
            f"{'files':>6} {'local':>8} {'official':>9} {'ratio':>6} {'fast':>8} {'ratio':>6} {'srv CPU/load':>13}"
            f" {'load avg':>9}"
        )
        for n, path in ((n, p) for n, p in tables.items() if isinstance(n, int)):
            url = f"{profile}#s.sch.t{n}"
            local = median_time(lambda p=path: DeltaTable(str(p)).to_pandas(), reps)
            cpu0 = server_cpu(int(state["pid"]))
            official = median_time(lambda u=url: delta_sharing.load_as_pandas(u), reps)
            cpu_official = (server_cpu(int(state["pid"])) - cpu0) / (reps + 1)
            fast = median_time(lambda u=url: fast_load(u), reps)
            print(
                f"{n:>6} {local:>8.3f} {official:>9.3f} {official / local:>6.2f} {fast:>8.3f} "
                f"{fast / local:>6.2f} {cpu_official:>12.3f}s {os.getloadavg()[0]:>9.2f}"
            )
        stop(home)
        if a.only == "load":
            print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            return 0
        print(f"\n2. POST /query (8-file table), 64 concurrent connections, {seconds:.0f} s")
        one, e1 = query_throughput(home, 1, seconds)
        two, e2 = query_throughput(home, 2, seconds)
        print(
            f"   1 worker: {one:8.0f} req/s ({e1} errors)   2 workers: {two:8.0f} req/s ({e2} errors)   ratio {two / one:.2f}"
        )
        print(
            f"\n3. burst of {a.burst} recipients, load_as_pandas of {BURST_ROWS:,} rows at the same moment"
        )
        burst(home, root, a.burst)
        backend_latencies(root, home, tables[8])
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
