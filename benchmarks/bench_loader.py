"""Benchmark of the lean recipient loader (issue 20, item 6): :func:`helpers.recipient.fast_load` vs a local read.

Not a test: it prints a table and exits 0. It writes tables of 1, 8 and 64 files (200,000 rows, as
``bench_scale.py``) into a temporary lab home, starts a server on a free loopback port and, for each table,
times side by side, in interleaved rounds (so a change of the machine's load hits every row alike):

- ``local``: deltalake's ``DeltaTable(path).to_pandas()`` of the same table (the reference of the ratios);
- ``official``: the official client's ``load_as_pandas`` through the server;
- ``fast``: :func:`~helpers.recipient.fast_load` (pandas), and ``arrow``: :func:`fast_load_arrow`;
- with ``--compare FILE``: ``fast_load`` of another copy of the loader module (a before/after in one run).

Figures: the median over rounds of each round's median time, the ratio to ``local``, and per load the
client's and the server's CPU seconds and the file requests made (the server's audit). The load average
is printed with every row: the client and the server share the machine's cores.

Run: ``.venv/bin/python benchmarks/bench_loader.py [--rounds N] [--reps N] [--workers N] [--compare FILE]``.
"""

from __future__ import annotations

import argparse
import importlib.util
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltalake import DeltaTable  # noqa: E402

from helpers.catalog import open_catalog  # noqa: E402
from helpers.procs import free_port  # noqa: E402
from helpers.provider import Provider  # noqa: E402
from helpers.recipient import fast_load, fast_load_arrow  # noqa: E402
from helpers.server import start, stop  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import server_cpu, write_file_tables  # noqa: E402

ROWS = 200_000
FILES = (1, 8, 64)


def make_tables(root: Path, home: Path) -> dict[int, Path]:
    """Tables of 1, 8 and 64 files of ``ROWS`` rows in all, shared as ``s.sch.t<n>`` to ``r``."""
    tables, entries = write_file_tables(root, ROWS, FILES)
    sql = ["CREATE SHARE s", *entries]
    sql += ["CREATE RECIPIENT r", "GRANT SELECT ON SHARE s TO RECIPIENT r"]
    Provider(home).sql(";".join(sql))
    return tables


def downloads(home: Path) -> int:
    """File requests (GET or HEAD) audited so far (the audit writer batches: wait until it settles)."""
    cat = open_catalog(home)
    last = -1
    for _ in range(50):
        count = int(
            cat.db.read(
                lambda c: c.execute(
                    "SELECT COUNT(*) FROM audit WHERE action = 'downloadFile'"
                ).fetchone()[0]
            )
        )
        if count == last:
            return count
        last = count
        time.sleep(0.2)
    return last


class Timing:
    """One loader's times (one median per round), client and server CPU per load."""

    def __init__(self) -> None:
        self.rounds: list[float] = []
        self.client_cpu: list[float] = []
        self.server_cpu: list[float] = []

    def run(self, fn: Callable[[], Any], reps: int, pid: int) -> None:
        fn()  # warm-up: imports, connections
        times = []
        cpu0, srv0 = time.process_time(), server_cpu(pid)
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        self.client_cpu.append((time.process_time() - cpu0) / reps)
        self.server_cpu.append((server_cpu(pid) - srv0) / reps)
        self.rounds.append(statistics.median(times))

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)


def load_compare(path: str) -> Callable[..., Any]:
    spec = importlib.util.spec_from_file_location("sharelab_loader_compare", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--compare {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fast_load  # type: ignore[no-any-return]


def loaders(
    url: str, path: Path, compare: Callable[..., Any] | None
) -> dict[str, Callable[[], Any]]:
    import delta_sharing

    found: dict[str, Callable[[], Any]] = {
        "local": lambda: DeltaTable(str(path)).to_pandas(),
        "official": lambda: delta_sharing.load_as_pandas(url),
        "fast": lambda: fast_load(url),
        "arrow": lambda: fast_load_arrow(url),
    }
    if compare is not None:
        found["compare"] = lambda: compare(url)
    return found


def gets_per_load(home: Path, fn: Callable[[], Any]) -> int:
    before = downloads(home)
    fn()
    return downloads(home) - before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument(
        "--reps", type=int, default=5, help="timed loads per loader and round (default 5)"
    )
    ap.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    ap.add_argument("--compare", metavar="FILE", help="another copy of helpers/recipient/fast.py")
    a = ap.parse_args()
    compare = load_compare(a.compare) if a.compare else None
    root = Path(tempfile.mkdtemp(prefix="sharelab-bench-loader-"))
    home = root / "home"
    os.environ.pop("SHARELAB_CATALOG_URL", None)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at start: {load}, cores {os.cpu_count()}, server workers {a.workers}")
    try:
        tables = make_tables(root, home)
        state = start(home, port=free_port(), workers=a.workers)
        pid = int(state["pid"])
        token = open_catalog(home).issue_token("r").token
        profile = root / "r.share"
        profile.write_text(
            json.dumps(
                {"shareCredentialsVersion": 1, "endpoint": state["endpoint"], "bearerToken": token}
            )
        )
        urls = {n: f"{profile}#s.sch.t{n}" for n in tables}
        results: dict[tuple[int, str], Timing] = {}
        loads: list[float] = []
        for r in range(a.rounds):
            for n, path in tables.items():
                for name, fn in loaders(urls[n], path, compare).items():
                    results.setdefault((n, name), Timing()).run(fn, a.reps, pid)
            loads.append(os.getloadavg()[0])
            print(f"  round {r + 1}/{a.rounds}: load average {loads[-1]:.2f}", flush=True)
        report(home, tables, urls, results, compare)
        print(
            f"\nload average over the rounds (1 min): min {min(loads):.2f}, max {max(loads):.2f}; "
            f"at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
    finally:
        try:
            stop(home)
        except Exception:  # noqa: BLE001 - best effort: the temp dir goes anyway
            pass
        shutil.rmtree(root, ignore_errors=True)
    return 0


def report(
    home: Path,
    tables: dict[int, Path],
    urls: dict[int, str],
    results: dict[tuple[int, str], Timing],
    compare: Callable[..., Any] | None,
) -> None:
    names = list(loaders(urls[FILES[0]], tables[FILES[0]], compare))
    print(
        f"\nload of a {ROWS:,}-row table: median s (ratio to local) | client CPU s | server CPU s"
    )
    print(f"{'files':>5}  " + "  ".join(f"{name:>23}" for name in names))
    for n in tables:
        local = results[(n, "local")].median
        cells = []
        for name in names:
            t = results[(n, name)]
            cells.append(
                f"{t.median:6.3f} ({t.median / local:4.2f}x) "
                f"{statistics.median(t.client_cpu):5.3f} {statistics.median(t.server_cpu):5.3f}"
            )
        print(f"{n:>5}  " + "  ".join(f"{c:>23}" for c in cells))
    print("\nfile requests per load (server audit):")
    for n in tables:
        fns = loaders(urls[n], tables[n], compare)
        counts = {name: gets_per_load(home, fns[name]) for name in names if name != "local"}
        print(f"{n:>5}  " + "  ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
