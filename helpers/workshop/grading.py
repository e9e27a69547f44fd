"""Grading without collecting notebooks: the grade table from the attendees' progress reports.

One row per attendee on the roster, one column per ``lab/task`` anyone reported, each cell *passed*,
*failed*, *not attempted* or empty (never reported), then ``passed`` (count) and ``score`` (passed / tasks,
0..1). The same frame is written as CSV by ``sharelab workshop grade --csv FILE``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from helpers.catalog.workshop import BoardRow

__all__ = ["grade_frame", "write_grades"]


def grade_frame(rows: list[BoardRow]) -> pd.DataFrame:
    """The grade table of ``rows`` (from :meth:`helpers.catalog.workshop.WorkshopStore.board`)."""
    tasks = sorted({(lab, t) for r in rows for lab, ts in r.progress.items() for t in ts})
    records = []
    for r in rows:
        rec: dict[str, object] = {"attendee": r.name, "activated": r.activated}
        for lab, task in tasks:
            rec[f"{lab}/{task}"] = r.progress.get(lab, {}).get(task, "")
        passed = sum(rec[f"{lab}/{t}"] == "passed" for lab, t in tasks)
        rec["passed"] = passed
        rec["score"] = round(passed / len(tasks), 3) if tasks else 0.0
        records.append(rec)
    columns = ["attendee", "activated", *[f"{lab}/{t}" for lab, t in tasks], "passed", "score"]
    return pd.DataFrame.from_records(records, columns=columns)


def write_grades(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the grade table as CSV (UTF-8, header row); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out
