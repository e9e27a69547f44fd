"""The instructor's view: run every learner notebook of a folder (in parallel), add the hidden checks, and
write a gradebook (one row per learner) and one HTML feedback report per learner."""

from __future__ import annotations

import html
import os
import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from helpers.exceptions import NotFoundError
from helpers.labs.core import NOT_ATTEMPTED, PASSED, results_from_notebook

NOT_RUN = "not run"


@dataclass(frozen=True)
class LearnerResult:
    learner: str
    notebook: Path
    results: dict[str, str]  # task -> status
    error: str  # the first error that stopped the notebook, or ""
    records: list[dict[str, Any]] = field(
        default_factory=list
    )  # task, status, points, message, ...

    @property
    def points(self) -> tuple[float, float]:
        return (
            sum(float(r["points"]) for r in self.records),
            sum(float(r["max_points"]) for r in self.records),
        )


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def expected_tasks(notebook: nbformat.NotebookNode) -> list[str]:
    """The tasks a lab notebook checks, from its cells tagged ``task:<name>``."""
    tasks: list[str] = []
    for cell in notebook.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith("task:") and tag[5:] not in tasks:
                tasks.append(tag[5:])
    return tasks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lab_of(records: list[dict[str, Any]], path: Path) -> str | None:
    from helpers.labs.core import LAB_FILES

    for record in records:
        if record.get("lab"):
            return str(record["lab"])
    text = path.read_text(errors="replace")
    for lab in LAB_FILES:
        if f"{lab}_lab" in text:
            return lab
    return None


def _records(executed: nbformat.NotebookNode, tasks: list[str], error: str) -> list[dict[str, Any]]:
    """The last verdict per task (tasks without one are 'not attempted', or 'not run' after an error)."""
    last: dict[str, dict[str, Any]] = {}
    for result in results_from_notebook(executed):
        last[result["task"]] = dict(result)
    records = []
    for task in tasks:
        default = {
            "task": task,
            "status": NOT_RUN if error else NOT_ATTEMPTED,
            "message": "the notebook stopped before this task" if error else "",
        }
        record = {"hints": 0, "points": 0.0, "max_points": 1.0, **default, **last.get(task, {})}
        records.append(record)
    return records


def grade_notebook(
    path: Path, *, timeout: int = 600, kernel_name: str | None = None
) -> LearnerResult:
    """Execute one learner notebook in a fresh lab home (own port), collect its check results and run the
    lab's hidden checks against the state it left."""
    from helpers.labs.hidden import run_hidden

    nb = nbformat.read(path, as_version=4)
    tasks = expected_tasks(nb)
    with tempfile.TemporaryDirectory(prefix="sharelab-grade-") as tmp:
        home = Path(tmp) / "home"
        out = Path(tmp) / path.name
        with _environment(SHARELAB_HOME=str(home), SHARELAB_PORT=str(_free_port())):
            error = _execute(path, out, kernel_name, timeout)
            executed = nbformat.read(out, as_version=4) if out.exists() else nb
            records = _records(executed, tasks, error)
            lab = _lab_of(records, path)
            if lab and home.exists():
                records += run_hidden(lab, home)
            _stop_server(home)
    statuses = {r["task"]: r["status"] for r in records}
    return LearnerResult(path.stem, path, statuses, error, records)


def _execute(path: Path, out: Path, kernel_name: str | None, timeout: int) -> str:
    """Run the notebook with papermill into ``out``; the error that ended it ("" when none). A kernel that
    died or stayed silent before the first cell (a machine under load) is started once more: the learner's
    code never ran."""
    import papermill as pm

    from helpers.kernels import KERNEL_MANAGER

    error = ""
    for attempt in range(2):
        try:
            pm.execute_notebook(
                str(path),
                str(out),
                kernel_name=kernel_name,
                progress_bar=False,
                execution_timeout=timeout,
                cwd=str(path.parent),
                log_output=False,
                kernel_manager_class=KERNEL_MANAGER,
            )
            return ""
        except Exception as exc:  # a learner's error ends the run; what ran before still counts
            error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            if attempt == 0 and _kernel_never_started(error):
                continue
            return error
    return error


def _kernel_never_started(error: str) -> bool:
    """The kernel died or stayed silent before the first cell (jupyter_client's start-up messages)."""
    return any(m in error for m in ("before replying to kernel_info", "Kernel didn't respond"))


def _stop_server(home: Path) -> None:
    try:
        from helpers import server

        server.stop(home)
    except Exception:  # noqa: BLE001 - nothing was started, or it is gone already
        pass


def _grade_one(args: tuple[Path, int, str | None]) -> LearnerResult:
    path, timeout, kernel_name = args
    return grade_notebook(path, timeout=timeout, kernel_name=kernel_name)


def grade_all(
    folder: Path, *, timeout: int = 600, kernel_name: str | None = None, workers: int = 2
) -> list[LearnerResult]:
    """Grade every notebook of ``folder``, ``workers`` at a time (each in its own process and home)."""
    folder = Path(folder)
    notebooks = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not notebooks:
        raise NotFoundError(f"no .ipynb files in {folder}; put one learner notebook per file there")
    jobs = [(p, timeout, kernel_name) for p in notebooks]
    if workers <= 1 or len(jobs) == 1:
        return [_grade_one(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_grade_one, jobs))


def gradebook(results: list[LearnerResult]) -> pd.DataFrame:
    """One row per learner: passed k/n, points, max points, each task's status and points, the error."""
    rows = []
    for result in results:
        earned, total = result.points
        row: dict[str, Any] = {"learner": result.learner}
        row |= {r["task"]: r["status"] for r in result.records}
        row |= {f"{r['task']} points": r["points"] for r in result.records}
        row |= {"points": round(earned, 2), "max_points": total, "error": result.error}
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("learner")
    status_cols = [c for c in frame.columns if c not in ("points", "max_points", "error")]
    status_cols = [c for c in status_cols if not c.endswith(" points")]
    frame[status_cols] = frame[status_cols].fillna(NOT_RUN)
    frame.insert(
        0,
        "passed",
        [f"{(frame.loc[i, status_cols] == PASSED).sum()}/{len(status_cols)}" for i in frame.index],
    )
    return frame


def feedback_html(result: LearnerResult) -> str:
    """The learner's report: one row per task with its points, message and the hint level used."""
    earned, total = result.points
    rows = []
    for r in result.records:
        hints = int(r.get("hints") or 0)
        used = "solution" if hints >= 99 else (f"hint {hints}" if hints else "none")
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    r["task"],
                    r["status"],
                    f"{float(r['points']):g}/{float(r['max_points']):g}",
                    r.get("message", ""),
                    used,
                )
            )
            + "</tr>"
        )
    error = (
        f"<p><b>The notebook stopped:</b> {html.escape(result.error)}</p>" if result.error else ""
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Feedback: {html.escape(result.learner)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px 8px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Feedback for {html.escape(result.learner)}</h1>"
        f"<p>{html.escape(result.notebook.name)}: <b>{earned:g} / {total:g} points</b></p>{error}"
        "<table><tr><th>task</th><th>status</th><th>points</th><th>message</th>"
        "<th>help used</th></tr>" + "".join(rows) + "</table></body></html>"
    )


def grade(
    folder: Path,
    *,
    timeout: int = 600,
    kernel_name: str | None = None,
    workers: int = 2,
    reports: Path | None = None,
) -> pd.DataFrame:
    """Grade ``folder``; write one ``<learner>.html`` per learner into ``reports`` when given."""
    results = grade_all(folder, timeout=timeout, kernel_name=kernel_name, workers=workers)
    if reports is not None:
        reports.mkdir(parents=True, exist_ok=True)
        for result in results:
            (reports / f"{result.learner}.html").write_text(feedback_html(result), encoding="utf-8")
    return gradebook(results)
