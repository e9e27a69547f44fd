"""``python -m helpers.workshop.grade_worker [--timeout S] NOTEBOOK...``: grade notebooks as the current user.

Started by :mod:`helpers.workshop.hub_grade` as an attendee's OS user; prints one JSON object per notebook
(``notebook``, ``results``, ``error``, ``records``) from :func:`helpers.labs.grade.grade_notebook`, without
the lab's hidden checks (they inspect a lab home where the learner played the provider; in the hub route
the provider is the instructor's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from helpers.labs.grade import grade_notebook

    parser = argparse.ArgumentParser(prog="grade_worker")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    os.environ.pop("SHARELAB_REPORT_PROGRESS", None)  # grading is not the attendee working
    for path in args.notebooks:
        r = grade_notebook(path, timeout=args.timeout)
        # the hidden checks inspect a lab home where the learner played the provider; here the provider
        # is the instructor's server (whose catalog the attendee cannot read), so they do not apply
        records = [x for x in r.records if not str(x.get("task", "")).startswith("hidden:")]
        results = {k: v for k, v in r.results.items() if not k.startswith("hidden:")}
        out = {"notebook": str(path), "results": results, "error": r.error, "records": records}
        print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
