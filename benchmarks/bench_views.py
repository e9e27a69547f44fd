"""Benchmark of shared views (issue 18): the per-recipient cache, figures and ratios side by side, in one run.

Not a test: it prints a table and exits 0 whatever the figures are (``--strict`` exits 1 when a target is
missed). It builds its own lab home in a temporary directory (a seeded customers table of ``--rows`` rows,
a view with a row filter on ``current_recipient('region')`` and an e-mail mask on
``current_recipient('tier')``), starts its own server on a free loopback port and deletes everything at
the end.

Measured with the official client's ``load_as_pandas`` (medians over ``--reps``, parquet and delta format):

1. **first read** of the view by a recipient (the view runs, its Delta table is written): each repetition
   uses a new recipient with the same properties, so every one is a real first read;
2. **second read** by the same recipient (nothing changed: the cached materialization is served);
3. **a table of the same size**: the recipient's exact result written as an ordinary Delta table and
   shared as a table (the baseline: what a second read should cost); target second / table <= 1.5x;
4. **after a source commit** that does not change this recipient's rows: the view runs again, its
   version stays (informational).

Run: ``.venv/bin/python benchmarks/bench_views.py [--rows N] [--reps N] [--strict]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REGIONS = np.array(["EU", "US", "APAC", "LATAM"])
TARGET_SECOND_VS_TABLE = 1.5


def customers(rows: int, seed: int = 42) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(rows, dtype=np.int64)
    return pa.table(
        {
            "customer_id": ids,
            "region": REGIONS[rng.integers(0, len(REGIONS), rows)],
            "email": [f"customer{i}@example.test" for i in ids],
            "lifetime_value": np.round(rng.gamma(2.0, 150.0, rows), 2),
            "signup_day": rng.integers(0, 3650, rows).astype(np.int32),
        }
    )


def timed(fn: Callable[[str], object], arg: str) -> float:
    """Seconds one call of ``fn(arg)`` takes."""
    started = time.perf_counter()
    fn(arg)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary lab home")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)

    import delta_sharing
    from deltalake import write_deltalake

    from helpers import server
    from helpers.procs import free_port
    from helpers.profiles import profile_dict, write_profile
    from helpers.provider import Provider

    tmp = Path(tempfile.mkdtemp(prefix="sharelab-bench-views-"))
    home = tmp / "home"
    try:
        write_deltalake(str(tmp / "customers"), customers(args.rows))
        p = Provider(home)
        p.sql(
            f"CREATE TABLE crm.core.customers LOCATION '{tmp / 'customers'}';"
            "CREATE VIEW crm.core.partner_customers AS SELECT customer_id, region, "
            "CASE WHEN current_recipient('tier') = 'gold' THEN email ELSE '***' END AS email, "
            "lifetime_value, signup_day FROM crm.core.customers "
            "WHERE region = current_recipient('region');"
            "CREATE SHARE bench; ALTER SHARE bench ADD VIEW crm.core.partner_customers AS crm.customers"
        )
        state = server.start(home, port=free_port())
        endpoint = state["endpoint"]
        counter = iter(range(10_000))

        def new_recipient() -> str:
            name = f"partner_{next(counter)}"
            p.sql(
                f"CREATE RECIPIENT {name} PROPERTIES ('region' = 'EU', 'tier' = 'gold');"
                f"GRANT SELECT ON SHARE bench TO RECIPIENT {name}"
            )
            path = tmp / f"{name}.share"
            write_profile(path, profile_dict(endpoint, p.catalog.issue_token(name)))
            return f"{path}#bench.crm.customers"

        # the baseline: the recipient's exact result as an ordinary shared table
        probe = new_recipient()
        result = delta_sharing.load_as_pandas(probe, use_delta_format=False)
        write_deltalake(str(tmp / "same_size"), pa.Table.from_pandas(result, preserve_index=False))
        p.sql(
            f"CREATE TABLE crm.core.same_size LOCATION '{tmp / 'same_size'}';"
            "ALTER SHARE bench ADD TABLE crm.core.same_size AS crm.same_size"
        )
        table_url = probe.replace("#bench.crm.customers", "#bench.crm.same_size")

        rows: list[tuple[str, str, float, float, str]] = []
        for fmt_name, fmt in (("parquet", False), ("delta", True)):

            def read(url: str, fmt: bool = fmt) -> None:
                delta_sharing.load_as_pandas(url, use_delta_format=fmt)

            firsts: list[float] = []
            for _ in range(args.reps):
                url = new_recipient()
                firsts.append(timed(read, url))
            first = statistics.median(firsts)
            read(url)  # warm-up of the second read
            read(table_url)
            seconds: list[float] = []
            tables: list[float] = []
            for _ in range(args.reps):  # interleaved, so that load changes hit both alike
                seconds.append(timed(read, url))
                tables.append(timed(read, table_url))
            second, table = statistics.median(seconds), statistics.median(tables)

            # a commit to the source that does not change an EU recipient's rows
            p.sql(
                "INSERT INTO crm.core.customers VALUES "
                f"({args.rows + len(rows)}, 'LATAM', 'x@example.test', 1.0, 1)"
            )
            after = timed(read, url)
            ratio = second / table
            rows += [
                (
                    fmt_name,
                    "first read (view runs, Delta table written)",
                    first,
                    first / second,
                    "",
                ),
                (
                    fmt_name,
                    "second read (cached)",
                    second,
                    ratio,
                    f"<= {TARGET_SECOND_VS_TABLE}x table",
                ),
                (fmt_name, "table of the same size", table, 1.0, "baseline"),
                (fmt_name, "read after an unrelated source commit", after, after / second, ""),
            ]
        print(
            f"\nshared view over {args.rows:,} customers; recipient result {len(result):,} rows "
            f"x {len(result.columns)} columns; medians of {args.reps}\n"
        )
        print(f"{'format':8} {'measure':48} {'seconds':>9} {'ratio':>8}  target")
        failed = False
        for fmt_name, label, took, rel, target in rows:
            print(f"{fmt_name:8} {label:48} {took:9.3f} {rel:8.2f}  {target}")
            if target.startswith("<=") and rel > TARGET_SECOND_VS_TABLE:
                failed = True
        print(
            "\nratio: first read and after-commit vs the second read; second read vs the same-size table"
        )
        server.stop(home)
        return 1 if failed and args.strict else 0
    finally:
        try:
            server.stop(home)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
