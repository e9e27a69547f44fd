"""Grading where the notebooks are (the hub route): every attendee's lab notebooks graded in their own home,
as their own OS user, with :func:`helpers.labs.grade.grade_notebook` (their check results; not the lab's
hidden checks, which inspect a lab home where the learner played the provider), and one gradebook (:func:`helpers.labs.grade.gradebook`) for the room.

The instructor (root) never runs an attendee's code as root: each attendee's notebooks are executed by
``python -m helpers.workshop.grade_worker`` started as that attendee's OS user (``sl-<name>``), from the
attendees' virtual environment, with their CA bundle, in a fresh lab home of their own (so a re-run cannot
touch their work), and without progress reports (grading is not the attendee working).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.catalog import open_catalog
from helpers.catalog.workshop import WorkshopStore
from helpers.exceptions import NotFoundError
from helpers.home import LabHome
from helpers.labs.grade import LearnerResult, gradebook
from helpers.workshop.hub import HOMES, USER_VENV
from helpers.workshop.hub_auth import os_user

__all__ = ["attendee_notebooks", "grade_in_homes", "hub_attendees"]


def hub_attendees(home: LabHome) -> dict[str, str]:
    """Attendee name -> OS user, for the roster's attendees provisioned for the hub (``hub add``)."""
    try:
        joins = json.loads((home.path / "hub" / "joins.json").read_text())
    except (OSError, ValueError):
        return {}
    names = WorkshopStore(open_catalog(home)).roster()
    return {n: os_user(n) for n in names if os_user(n) in joins}


def attendee_notebooks(user: str, homes: Path = HOMES) -> list[Path]:
    """The lab notebooks in an attendee's home (``~/labs/*.ipynb``)."""
    return sorted(p for p in (homes / user / "labs").glob("*.ipynb") if not p.name.startswith("."))


def _grade_as(user: str, notebooks: list[Path], timeout: int, homes: Path) -> list[dict[str, Any]]:
    pw = pwd.getpwnam(user)
    uhome = homes / user
    bundle = uhome / ".sharelab-ca-bundle.pem"
    env = {
        "HOME": str(uhome),
        "USER": user,
        "LOGNAME": user,
        "PATH": f"{USER_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    if bundle.is_file():
        env |= {"REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle)}
    cmd = [str(USER_VENV / "bin" / "python"), "-m", "helpers.workshop.grade_worker"]
    done = subprocess.run(
        [*cmd, "--timeout", str(timeout), *map(str, notebooks)],
        user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd=uhome,
        capture_output=True, text=True, timeout=timeout * len(notebooks) + 120,
    )  # fmt: skip
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [
            {"notebook": str(nb), "results": {}, "records": [], "error": f"grading failed: {last}"}
            for nb in notebooks
        ]
    return [json.loads(ln) for ln in lines]


def grade_in_homes(
    home: LabHome,
    names: Iterable[str] | None = None,
    *,
    timeout: int = 600,
    workers: int = 2,
    homes: Path = HOMES,
) -> pd.DataFrame:
    """Grade every hub attendee's (or only ``names``') lab notebooks where they are; one gradebook row per
    attendee and lab.

    :raises NotFoundError: no attendee was provisioned for the hub, a name is not one of them, or no
        attendee has a lab notebook.
    """
    attendees = hub_attendees(home)
    wanted = list(names or [])
    unknown = [n for n in wanted if n not in attendees]
    if unknown:
        raise NotFoundError(
            f"not hub attendees of this lab home: {', '.join(unknown)} (sharelab workshop hub add NAME)"
        )
    if wanted:
        attendees = {n: attendees[n] for n in wanted}
    if not attendees:
        raise NotFoundError(
            "no attendee of this lab home was provisioned for the hub (sharelab workshop hub add NAME...);"
            " for the bring-your-own-laptop route use: sharelab workshop grade --from-reports"
        )
    jobs = [(name, user, attendee_notebooks(user, homes)) for name, user in attendees.items()]
    jobs = [j for j in jobs if j[2]]
    if not jobs:
        raise NotFoundError(f"no attendee has a lab notebook under {homes}/<user>/labs")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        graded = list(pool.map(lambda j: _grade_as(j[1], j[2], timeout, homes), jobs))
    results = []
    for (name, _user, notebooks), outs in zip(jobs, graded, strict=True):
        for out in outs:
            path = Path(out["notebook"])
            learner = name if len(notebooks) == 1 else f"{name}/{path.stem}"
            results.append(
                LearnerResult(learner, path, out["results"], out["error"], out["records"])
            )
    return gradebook(results)
