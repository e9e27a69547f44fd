"""Hands-on labs with automatic checks (``check()``, tiered ``hint()``, ``solution()``) and grading.

Exercise notebooks live in ``labs/``; they are generated from ``labs/solutions/`` by ``sharelab labs build``
(see :mod:`helpers.labs.build`). ``sharelab labs grade DIR`` runs every learner notebook of a folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from helpers.labs.core import (
    FAILED,
    NOT_ATTEMPTED,
    PASSED,
    Blank,
    CheckFailed,
    CheckResult,
    Task,
    ____,
    is_blank,
)

__all__ = [
    "FAILED",
    "NOT_ATTEMPTED",
    "PASSED",
    "Blank",
    "CheckFailed",
    "CheckResult",
    "Task",
    "____",
    "is_blank",
    "register_cli",
]


def _cmd_grade(args: argparse.Namespace) -> int:
    from helpers.labs.grade import grade

    folder = Path(args.folder)
    reports = Path(args.reports) if args.reports else folder / "feedback"
    frame = grade(
        folder,
        timeout=args.timeout,
        kernel_name=args.kernel,
        workers=args.workers,
        reports=reports,
    )
    with __import__("pandas").option_context("display.max_columns", None, "display.width", 200):
        print(frame.to_string())
    if args.csv:
        frame.to_csv(args.csv)
        print(f"wrote {args.csv}")
    print(f"wrote {len(frame)} feedback report(s) to {reports}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from helpers.labs.build import build

    changed = build(check=args.check)
    if args.check:
        if changed:
            names = ", ".join(p.name for p in changed)
            print(f"exercises out of date with labs/solutions/: {names}; run 'sharelab labs build'")
            return 1
        print("exercises match their solutions")
        return 0
    print("\n".join(f"wrote {p}" for p in changed) or "exercises already up to date")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "labs",
        help="build and grade the hands-on labs",
        description="Build exercise notebooks and grade learners' notebooks.",
    )
    sub = parser.add_subparsers(dest="labs_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda _a: parser.print_help() or 2)

    g = sub.add_parser(
        "grade",
        help="run every learner notebook in DIR; gradebook CSV and a feedback report per learner",
        description="Execute each .ipynb in DIR with papermill, each in a fresh lab home, "
        "WORKERS at a time; run the instructor-only hidden checks; print one row per learner "
        "(status and points per task), write the gradebook CSV and one HTML report per learner.",
    )
    g.add_argument("folder", metavar="DIR", help="folder with one learner notebook per file")
    g.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    g.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    g.add_argument("--csv", metavar="FILE", help="also write the gradebook as CSV")
    g.add_argument("--workers", type=int, default=2, help="notebooks run at once (default 2)")
    g.add_argument(
        "--reports", metavar="DIR", help="feedback reports folder (default DIR/feedback)"
    )
    g.set_defaults(func=_cmd_grade)

    b = sub.add_parser(
        "build",
        help="generate labs/*.ipynb from labs/solutions/*.ipynb",
        description="Write each exercise notebook from its solution: regions between "
        "'# BEGIN SOLUTION' and '# END SOLUTION' become ____; outputs are cleared.",
    )
    b.add_argument(
        "--check", action="store_true", help="only report exercises that differ (exit 1)"
    )
    b.set_defaults(func=_cmd_build)
