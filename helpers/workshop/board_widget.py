"""The instructor's board as a notebook widget that refreshes itself (ipywidgets).

    from helpers.workshop.board_widget import board_widget
    board_widget()            # this lab home; refreshes every 5 s until the kernel stops

The same numbers as ``sharelab workshop board`` and the ``/workshop/board`` page
(:meth:`helpers.catalog.workshop.WorkshopStore.board`), read straight from the catalog, so it works without
the server too; plus a bar chart of the room's progress per task.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pandas as pd

from helpers.catalog import open_catalog
from helpers.catalog.workshop import BoardRow, WorkshopStore
from helpers.home import LabHome

__all__ = ["board_frame", "board_widget"]


def board_frame(rows: list[BoardRow]) -> pd.DataFrame:
    """The board as a table: one row per attendee, one column per reported task (✔ ✘ …)."""
    marks = {"passed": "✔", "failed": "✘", "not attempted": "…"}
    tasks = sorted({(lab, t) for r in rows for lab, ts in r.progress.items() for t in ts})
    records = []
    for r in rows:
        rec: dict[str, Any] = {
            "attendee": r.name,
            "activated": "yes" if r.activated else "no",
            "last request": r.last_request.strftime("%H:%M:%S") if r.last_request else "never",
            "requests": r.requests,
            "tables read": len(r.tables_read),
            "401": r.errors[401],
            "403": r.errors[403],
            "404": r.errors[404],
        }
        for lab, task in tasks:
            rec[f"{lab} {task}"] = marks.get(r.progress.get(lab, {}).get(task, ""), "")
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _plot(rows: list[BoardRow]) -> Any:
    import matplotlib.pyplot as plt

    tasks = sorted({(lab, t) for r in rows for lab, ts in r.progress.items() for t in ts})
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(tasks), 2) + 0.8))
    passed = [sum(r.progress.get(lab, {}).get(t) == "passed" for r in rows) for lab, t in tasks]
    ax.barh([f"{lab} {t}" for lab, t in tasks], passed, color="#2da44e")
    ax.set_xlim(0, max(len(rows), 1))
    ax.set_xlabel("attendees who passed")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def board_widget(
    home: str | os.PathLike[str] | None = None, *, every: float = 5.0, start: bool = True
) -> Any:
    """A VBox (summary, progress chart, table) refreshed every ``every`` seconds in the background."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    store = WorkshopStore(open_catalog(LabHome.resolve(home)))
    summary, chart, table = widgets.HTML(), widgets.Output(), widgets.HTML()
    box = widgets.VBox([summary, chart, table])

    def refresh() -> None:
        rows = store.board()
        summary.value = f"<b>{sum(r.activated for r in rows)} of {len(rows)}</b> attendees activated their profile"
        table.value = board_frame(rows).to_html(index=False)
        with chart:
            chart.clear_output(wait=True)
            if any(r.progress for r in rows):
                fig = _plot(rows)
                plt.show()
                plt.close(fig)

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            refresh()

    refresh()
    if start:
        threading.Thread(target=loop, name="sharelab-board", daemon=True).start()
    box.stop = stop.set  # board.stop() ends the refreshing
    box.refresh = refresh
    return box
