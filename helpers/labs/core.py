"""Checks for lab exercises: ``q.check()``, tiered ``q.hint()`` and ``q.solution()``.

Modelled on Kaggle's learntools: a task knows how to tell an untouched exercise ('not attempted') from a
wrong answer ('failed', with a message that says what to look at, never the expected value) and a right one.
Every check publishes its result as a display with the MIME type :data:`RESULT_MIME`, which is how the
grader (``sharelab labs grade``) reads executed learner notebooks.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_MIME = "application/vnd.sharelab.check+json"

PASSED = "passed"
FAILED = "failed"
NOT_ATTEMPTED = "not attempted"

LABS_DIR = Path(__file__).resolve().parent.parent.parent / "labs"


class Blank:
    """The placeholder learners replace (``____``). Anything still equal to it is 'not attempted'."""

    _instance: Blank | None = None

    def __new__(cls) -> Blank:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____"

    def __bool__(self) -> bool:
        return False


____ = Blank()


def is_blank(value: Any) -> bool:
    """True for the placeholder, ``None``, or text that holds nothing but comments and whitespace."""
    if value is ____ or value is None:
        return True
    if isinstance(value, str):
        lines = [ln.strip() for ln in value.splitlines()]
        return all(not ln or ln.startswith("--") or ln.startswith("#") for ln in lines) or (
            "____" in value
        )
    return False


class CheckFailed(AssertionError):
    """Raised inside a check function: the message is shown to the learner."""


@dataclass(frozen=True)
class CheckResult:
    lab: str
    task: str
    status: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"lab": self.lab, "task": self.task, "status": self.status, "message": self.message}


def _publish(result: CheckResult) -> None:
    icon = {PASSED: "✅", FAILED: "❌", NOT_ATTEMPTED: "⏳"}[result.status]
    text = f"{icon} {result.task}: {result.status}" + (
        f": {result.message}" if result.message else ""
    )
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display({"text/plain": text, RESULT_MIME: result.to_json()}, raw=True)
            return
    except (
        ImportError
    ):  # pragma: no cover - IPython is a dependency, but checks also run in scripts
        pass
    print(text)


@dataclass
class Task:
    """One exercise.

    :param lab: the lab's name (``provider``, ``recipient``, ...).
    :param name: the task's id (``q1``); the solution notebook tags its answer cell ``task:<name>``.
    :param title: one line shown with the result.
    :param checker: called with the learner's answer (or ``None`` for state checks); raises
        :class:`CheckFailed` with an actionable message, returns normally when right.
    :param hints: tiered hints, the first gentle, the last nearly the answer.
    :param attempted: decides 'not attempted' from the answer; defaults to "the answer is not blank".
    """

    lab: str
    name: str
    title: str
    checker: Callable[[Any], None]
    hints: Sequence[str] = field(default_factory=tuple)
    attempted: Callable[[Any], bool] | None = None
    last: CheckResult | None = None

    def evaluate(self, answer: Any = ____) -> CheckResult:
        attempted = self.attempted(answer) if self.attempted else not is_blank(answer)
        if not attempted:
            return CheckResult(
                self.lab,
                self.name,
                NOT_ATTEMPTED,
                "replace the ____ placeholder with your answer, run the cell, then check again",
            )
        try:
            self.checker(answer)
        except CheckFailed as exc:
            return CheckResult(self.lab, self.name, FAILED, str(exc))
        except (
            Exception
        ) as exc:  # a learner's broken answer must read as a failure, not a traceback
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return CheckResult(self.lab, self.name, FAILED, f"checking your answer raised {last}")
        return CheckResult(self.lab, self.name, PASSED, "")

    def check(self, answer: Any = ____) -> CheckResult:
        """Check the answer (or the state it produced) and show the verdict."""
        self.last = self.evaluate(answer)
        _publish(self.last)
        return self.last

    def hint(self, level: int = 1) -> None:
        """Show hint ``level`` (1 = gentlest)."""
        if not self.hints:
            print(f"💡 {self.name}: no hint for this task; try solution().")
            return
        level = max(1, min(level, len(self.hints)))
        more = f" (hint({level + 1}) gives more)" if level < len(self.hints) else ""
        print(f"💡 {self.name} hint {level}/{len(self.hints)}: {self.hints[level - 1]}{more}")

    def solution(self) -> None:
        """Show the reference answer, read from the lab's solution notebook (one source, no drift)."""
        print(f"🔑 {self.name} solution:\n{solution_text(self.lab, self.name)}")

    def widget(self, answer_getter: Callable[[], Any] | None = None) -> Any:
        """A row of buttons (Check, Hint, Solution) for JupyterLab; falls back to None without ipywidgets."""
        try:
            import ipywidgets as w
        except ImportError:  # pragma: no cover
            return None
        out = w.Output()
        level = {"n": 0}

        def on_check(_: Any) -> None:
            with out:
                out.clear_output()
                self.check(answer_getter() if answer_getter else ____)

        def on_hint(_: Any) -> None:
            level["n"] += 1
            with out:
                self.hint(level["n"])

        def on_solution(_: Any) -> None:
            with out:
                self.solution()

        buttons = []
        for label, handler in (("Check", on_check), ("Hint", on_hint), ("Solution", on_solution)):
            b = w.Button(description=label)
            b.on_click(handler)
            buttons.append(b)
        return w.VBox([w.HBox(buttons), out])


def solution_notebook(lab: str) -> Path:
    return LABS_DIR / "solutions" / f"{LAB_FILES[lab]}.ipynb"


def solution_text(lab: str, task: str) -> str:
    """The source of the solution notebook's cell tagged ``task:<task>``, without marker lines."""
    import nbformat

    path = solution_notebook(lab)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if f"task:{task}" in cell.get("metadata", {}).get("tags", []):
            return "\n".join(ln for ln in cell.source.splitlines() if marker(ln) is None)
    return f"(no cell tagged task:{task} in {path.name})"


#: Markers around the part of a solution cell that the exercise replaces by ``____``; written as a
#: Python comment (``# BEGIN SOLUTION``) or, inside SQL text, as a SQL comment (``-- BEGIN SOLUTION``).
BEGIN = "BEGIN SOLUTION"
END = "END SOLUTION"


def marker(line: str) -> str | None:
    """``BEGIN``/``END`` if the line is a solution marker, else None."""
    text = line.strip()
    for prefix in ("#", "--"):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
            return text if text in (BEGIN, END) else None
    return None


#: lab name -> notebook file stem (same stem in labs/ and labs/solutions/).
LAB_FILES: dict[str, str] = {
    "provider": "lab1_provider",
    "recipient": "lab2_recipient",
    "cdf": "lab3_change_data_feed",
    "mesh": "lab4_data_mesh",
}


def results_from_notebook(nb: Any) -> list[dict[str, str]]:
    """Every check result published in an executed notebook, in order."""
    found: list[dict[str, str]] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if RESULT_MIME in data:
                value = data[RESULT_MIME]
                found.append(json.loads(value) if isinstance(value, str) else dict(value))
    return found


def expect(condition: bool, message: str) -> None:
    """Fail the current check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def is_number(value: Any) -> bool:
    """A real number (numpy and Decimal included), not a bool or a string."""
    if isinstance(value, bool | str):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def is_whole_number(value: Any) -> bool:
    return is_number(value) and float(value) == int(float(value))


def summary(lab: Any) -> Any:
    """A table of the lab's tasks and their latest verdicts (tasks never checked show 'not attempted')."""
    import pandas as pd

    rows = []
    for task in vars(lab).values():
        if isinstance(task, Task):
            status = task.last.status if task.last else NOT_ATTEMPTED
            rows.append({"task": task.name, "title": task.title, "status": status})
    return pd.DataFrame(rows)
