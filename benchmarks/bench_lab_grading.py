"""Grading a class: N copies of a lab notebook graded by ``sharelab labs grade`` with 1 and W workers.

Each copy runs in its own fresh lab home (dataset generated, server started, notebook executed, hidden
checks run), so this is the instructor's real cost. Prints seconds per run and per notebook, side by side.

    .venv/bin/python benchmarks/bench_lab_grading.py --learners 30 --workers 2 --lab recipient
    .venv/bin/python benchmarks/bench_lab_grading.py --learners 4 --workers 2 --lab capstone
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.labs.core import LAB_FILES, LABS_DIR  # noqa: E402
from helpers.labs.grade import grade  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lab", default="recipient", choices=sorted(LAB_FILES))
    parser.add_argument("--serial", action="store_true", help="also time 1 worker (same class)")
    args = parser.parse_args()
    source = LABS_DIR / "solutions" / f"{LAB_FILES[args.lab]}.ipynb"
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        folder = Path(tmp) / "class"
        folder.mkdir()
        for i in range(args.learners):
            shutil.copy(source, folder / f"learner{i:02d}.ipynb")
        runs = [args.workers] + ([1] if args.serial else [])
        for workers in runs:
            start = time.perf_counter()
            frame = grade(folder, workers=workers, reports=Path(tmp) / f"reports-{workers}")
            took = time.perf_counter() - start
            full = int((frame["points"] == frame["max_points"]).sum())
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"lab={args.lab} learners={args.learners} workers={workers}: {took:.1f} s "
                f"({took / args.learners:.2f} s per notebook), {full}/{len(frame)} full marks "
                f"(load average {load})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
