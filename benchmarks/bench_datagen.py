"""Benchmark of the dataset generators: wall time, rows per second per table and peak RSS.

Cases (targets from issue 4):

* retail ``large`` with 14 days: under 10 s and under 1 GB peak RSS (the seed-003 generator needs
  about 190 s and 5.7 GB for the same);
* airline ``xlarge`` (seed 000's volumes): under 60 s.

Each case runs ``generate()`` (Delta tables + catalog registration, into a temporary lab home) in its
own process, started by its own measuring process, so ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the
peak RSS of exactly that generation. Run::

    .venv/bin/python benchmarks/bench_datagen.py            # both cases
    .venv/bin/python benchmarks/bench_datagen.py --case retail-large
    .venv/bin/python benchmarks/bench_datagen.py --strict      # exit 1 when a target is missed
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name: (dataset, scale, days, target seconds, target peak MB, seed-system reference)
CASES: dict[str, tuple[str, str, int | None, float, float | None, str]] = {
    "retail-large": ("retail", "large", 14, 10.0, 1024.0, "seed 003: ~190 s, 5.7 GB"),
    "airline-xlarge": ("airline", "xlarge", None, 60.0, None, "seed 000: needs Redshift"),
}


def worker(dataset: str, scale: str, days: int | None) -> None:
    """Generate one dataset and print its summary as JSON (runs in the measured process)."""
    sys.path.insert(0, str(REPO))
    from helpers.datagen import generate

    home = Path(tempfile.mkdtemp(prefix="bench-datagen-"))
    try:
        started = time.perf_counter()
        summary = generate(dataset, home, scale=scale, days=days, progress=False)
        seconds = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "tables": [[t.name, t.rows, t.seconds] for t in summary.tables],
                }
            )
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(case: str) -> None:
    """Run one worker as the only child of this process; print its result plus its peak RSS."""
    dataset, scale, days, *_ = CASES[case]
    cmd = [sys.executable, __file__, "--worker", dataset, scale, str(days or 0)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(json.dumps({"error": proc.stderr.strip().splitlines()[-1:]}))
        return
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(json.dumps(result))


def run_case(case: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", case], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--worker", nargs=3, metavar=("DATASET", "SCALE", "DAYS"))
    parser.add_argument("--measure", choices=sorted(CASES))
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.worker:
        dataset, scale, days = args.worker
        worker(dataset, scale, int(days) or None)
        return 0
    if args.measure:
        measure(args.measure)
        return 0

    results = {}
    for case in args.case or list(CASES):
        load_before = os.getloadavg()[0]
        results[case] = run_case(case)
        results[case]["load"] = (load_before, os.getloadavg()[0])
    # other processes on the machine slow the figures down: the load average says how busy it was
    print(f"\nmachine: {os.cpu_count()} CPUs; load average (1 min) shown before -> after each case")
    print(
        f"{'case':<16} {'seconds':>8} {'target':>8} {'ratio':>6} {'peak MB':>8} {'target':>8} "
        f"{'ratio':>6}  {'rows':>12} {'rows/s':>11}  {'load':>10}  reference"
    )
    failed = False
    for case, res in results.items():
        _, _, _, t_target, m_target, reference = CASES[case]
        if "error" in res:
            print(f"{case:<16} ERROR {res['error']}")
            failed = True
            continue
        rows = sum(t[1] for t in res["tables"])
        t_ratio = res["seconds"] / t_target
        m_text = f"{m_target:>8.0f}" if m_target else f"{'-':>8}"
        m_ratio = f"{res['peak_rss_mb'] / m_target:>6.2f}" if m_target else f"{'-':>6}"
        failed |= t_ratio > 1 or bool(m_target and res["peak_rss_mb"] > m_target)
        print(
            f"{case:<16} {res['seconds']:>8.2f} {t_target:>8.0f} {t_ratio:>6.2f} "
            f"{res['peak_rss_mb']:>8.0f} {m_text} {m_ratio}  {rows:>12,} {rows / res['seconds']:>11,.0f}"
            f"  {res['load'][0]:>4.1f}->{res['load'][1]:<4.1f}  {reference}"
        )
    for case, res in results.items():
        if "error" in res:
            continue
        print(f"\n{case}: per table (build + write)")
        print(f"  {'table':<45} {'rows':>12} {'seconds':>8} {'rows/s':>12}")
        for name, rows, seconds in res["tables"]:
            rate = rows / seconds if seconds > 0 else float("inf")
            print(f"  {name:<45} {rows:>12,} {seconds:>8.3f} {rate:>12,.0f}")
    print("\nall targets met" if not failed else "\nSOME TARGETS MISSED")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
