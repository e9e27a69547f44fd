"""Real lessons in an attendee's server: notebook 03 and lab 2 as the attendee would do them.

:func:`do_lab2` writes the attendee's answers into their own copy of lab 2 (in their home, as their file):
the solution's answer for each task in ``answered``, a wrong answer for each task in ``wrong``, the
untouched ``____`` for the others. :data:`RUN` is the code run in the attendee's kernel (their OS user, their
environment): papermill executes their notebook 03 and their lab 2 in place, as "Run all" and save would.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
SOLUTION = REPO / "labs" / "solutions" / "lab2_recipient.ipynb"
LAB2 = "labs/lab2_recipient.ipynb"
NB03 = "notebooks/03_recipient_open_client.ipynb"
TASKS = ("r1", "r2", "r3", "r4", "r5", "r6")
#: a wrong answer per task (the exercise's ____ replaced)
WRONG = {"r1": "1", "r3": "0.5", "r6": "['sales_domain']"}

RUN = f"""
import getpass, os
import papermill as pm
home = os.path.expanduser('~')
for rel in ({NB03!r}, {LAB2!r}):
    path = os.path.join(home, rel)
    pm.execute_notebook(path, path, cwd=os.path.dirname(path), progress_bar=False, kernel_name='python3',
                        kernel_manager_class='helpers.kernels.IpcKernelManager')
print(getpass.getuser(), 'ran', 'both')
"""


def _task(cell: nbformat.NotebookNode) -> str | None:
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t.startswith("task:")]
    return tags[0][5:] if tags else None


def do_lab2(user: str, answered: set[str], wrong: set[str], homes: Path = Path("/home")) -> Path:
    """Write ``user``'s answers into ``~/labs/lab2_recipient.ipynb`` (kept the attendee's file)."""
    path = homes / user / LAB2
    mine = nbformat.read(path, as_version=4)
    solution = nbformat.read(SOLUTION, as_version=4)
    for cell, sol in zip(mine.cells, solution.cells, strict=True):
        task = _task(cell)
        if task in answered:
            cell.source = sol.source
        elif task in wrong:
            cell.source = cell.source.replace("____", WRONG[task], 1)
    nbformat.write(mine, path)
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def expected(answered: set[str], wrong: set[str]) -> dict[str, str]:
    """The verdict per task the board must show."""
    return {
        t: "passed" if t in answered else "failed" if t in wrong else "not attempted" for t in TASKS
    }
