"""The instructor's view: run every learner notebook of a folder and tabulate each task's verdict."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd

from helpers.exceptions import NotFoundError
from helpers.labs.core import NOT_ATTEMPTED, results_from_notebook

NOT_RUN = "not run"


@dataclass(frozen=True)
class LearnerResult:
    learner: str
    notebook: Path
    results: dict[str, str]  # task -> status
    error: str  # the first error that stopped the notebook, or ""


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


def grade_notebook(
    path: Path, *, timeout: int = 600, kernel_name: str | None = None
) -> LearnerResult:
    """Execute one learner notebook in a fresh lab home and collect its check results."""
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    tasks = expected_tasks(nb)
    error = ""
    with tempfile.TemporaryDirectory(prefix="sharelab-grade-") as tmp:
        home = Path(tmp) / "home"
        out = Path(tmp) / path.name
        with _environment(SHARELAB_HOME=str(home)):
            try:
                pm.execute_notebook(
                    str(path),
                    str(out),
                    kernel_name=kernel_name,
                    progress_bar=False,
                    execution_timeout=timeout,
                    cwd=str(path.parent),
                    log_output=False,
                )
            except Exception as exc:  # a learner's error ends the run; what ran before still counts
                error = (
                    str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                )
            finally:
                _stop_server(home)
        executed = nbformat.read(out, as_version=4) if out.exists() else nb
    statuses: dict[str, str] = {task: NOT_RUN if error else NOT_ATTEMPTED for task in tasks}
    for result in results_from_notebook(executed):
        statuses[result["task"]] = result["status"]
    return LearnerResult(learner=path.stem, notebook=path, results=statuses, error=error)


def _stop_server(home: Path) -> None:
    try:
        from helpers import server

        server.stop(home)
    except Exception:  # noqa: BLE001 - nothing was started, or it is gone already
        pass


def grade(folder: Path, *, timeout: int = 600, kernel_name: str | None = None) -> pd.DataFrame:
    """One row per learner notebook in ``folder``, one column per task, plus the stopping error."""
    folder = Path(folder)
    notebooks = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not notebooks:
        raise NotFoundError(f"no .ipynb files in {folder}; put one learner notebook per file there")
    rows = []
    for path in notebooks:
        result = grade_notebook(path, timeout=timeout, kernel_name=kernel_name)
        rows.append({"learner": result.learner, **result.results, "error": result.error})
    frame = pd.DataFrame(rows).set_index("learner").fillna(NOT_RUN)
    tasks = [c for c in frame.columns if c != "error"]
    frame.insert(
        0,
        "passed",
        [f"{(frame.loc[i, tasks] == 'passed').sum()}/{len(tasks)}" for i in frame.index],
    )
    return frame
