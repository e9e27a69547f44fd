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

from helpers.recipient.progress import report_from_env

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
    """Raised inside a check function: the message is shown to the learner. ``credit`` is the fraction
    of the task's points earned anyway (partial credit for a task with parts, e.g. one of two counts)."""

    def __init__(self, message: str, credit: float = 0.0) -> None:
        super().__init__(message)
        self.credit = max(0.0, min(1.0, float(credit)))


@dataclass(frozen=True)
class CheckResult:
    lab: str
    task: str
    status: str
    message: str

    hints: int = 0  # the highest hint level the learner had asked for (solution() counts as 99)
    points: float = 0.0  # earned
    max_points: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "task": self.task,
            "status": self.status,
            "message": self.message,
            "hints": self.hints,
            "points": self.points,
            "max_points": self.max_points,
        }


def normalize(answer: Any) -> Any:
    """The answer in a plain Python form: a one-cell DataFrame, a one-element Series or array and a numpy
    scalar become the value; a one-row DataFrame, a Series or a 1-d array become a tuple. Anything else
    (lists, tuples, strings, objects such as connections or versions) is returned unchanged."""
    try:
        import numpy as np
        import pandas as pd
    except ImportError:  # pragma: no cover - both are dependencies
        return answer
    if isinstance(answer, pd.DataFrame):
        if answer.shape == (1, 1):
            return normalize(answer.iat[0, 0])
        if answer.shape[0] == 1:
            return tuple(normalize(v) for v in answer.iloc[0])
        return answer
    if isinstance(answer, pd.Series | pd.Index) or (
        isinstance(answer, np.ndarray) and answer.ndim <= 1
    ):
        values = (
            [normalize(v) for v in list(answer)] if getattr(answer, "ndim", 1) else [answer.item()]
        )
        return values[0] if len(values) == 1 else tuple(values)  # () for an empty one
    if isinstance(answer, np.generic):
        return answer.item()
    return answer


def _publish(result: CheckResult) -> None:
    icon = {PASSED: "✅", FAILED: "❌", NOT_ATTEMPTED: "⏳"}[result.status]
    partial = (
        f" ({result.points:g}/{result.max_points:g} points)"
        if result.status == FAILED and result.points
        else ""
    )
    text = f"{icon} {result.task}: {result.status}{partial}" + (
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
    hints_used: int = 0
    points: float = 1.0
    last_answer: Any = ____

    def evaluate(self, answer: Any = ____) -> CheckResult:
        answer = normalize(answer)
        attempted = self.attempted(answer) if self.attempted else not is_blank(answer)
        if not attempted:
            return CheckResult(
                self.lab,
                self.name,
                NOT_ATTEMPTED,
                "replace the ____ placeholder with your answer, run the cell, then check again",
                self.hints_used,
                0.0,
                self.points,
            )
        try:
            self.checker(answer)
        except CheckFailed as exc:
            earned = round(self.points * exc.credit, 2)
            return CheckResult(
                self.lab, self.name, FAILED, str(exc), self.hints_used, earned, self.points
            )
        except (
            Exception
        ) as exc:  # a learner's broken answer must read as a failure, not a traceback
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return CheckResult(
                self.lab,
                self.name,
                FAILED,
                f"checking your answer raised {last}",
                self.hints_used,
                0.0,
                self.points,
            )
        return CheckResult(
            self.lab, self.name, PASSED, "", self.hints_used, self.points, self.points
        )

    def check(self, answer: Any = ____) -> None:
        """Check the answer (or the state it produced) and show the verdict: one line, and, unless it
        passed, Hint and Solution buttons. Returns nothing (the verdict is kept in :attr:`last`)."""
        self.last_answer = answer
        self.last = self.evaluate(answer)
        _publish(self.last)
        # opt-in workshop progress (SHARELAB_REPORT_PROGRESS)
        report_from_env(self.lab, [self.last])
        if self.last.status != PASSED:
            _show(self.help_buttons())

    def hint(self, level: int = 1) -> None:
        """Show hint ``level`` (1 = gentlest)."""
        if not self.hints:
            print(f"💡 {self.name}: no hint for this task; try solution().")
            return
        level = max(1, min(level, len(self.hints)))
        self.hints_used = max(self.hints_used, level)
        more = f" (hint({level + 1}) gives more)" if level < len(self.hints) else ""
        print(f"💡 {self.name} hint {level}/{len(self.hints)}: {self.hints[level - 1]}{more}")

    def solution(self) -> None:
        """Show the reference answer, read from the lab's solution notebook (one source, no drift)."""
        self.hints_used = SOLUTION_SHOWN
        print(f"🔑 {self.name} solution:\n{solution_text(self.lab, self.name)}")

    def help_buttons(self) -> Any:
        """Hint (one level more per click) and Solution buttons; None without ipywidgets or IPython."""
        return self._buttons(None, with_check=False)

    def buttons(self, answer_name: str | None = None) -> Any:
        """Check, Hint and Solution buttons. ``answer_name`` is the name of the notebook variable that holds
        the answer (``lab.p1.buttons("answer_p1")``); Check reads it when clicked."""

        def getter() -> Any:
            if answer_name is None:
                return ____
            from IPython import get_ipython

            shell = get_ipython()
            return shell.user_ns.get(answer_name, ____) if shell is not None else ____

        return self._buttons(getter, with_check=True)

    def widget(self, answer_getter: Callable[[], Any] | None = None) -> Any:
        """A row of buttons (Check, Hint, Solution) for JupyterLab; falls back to None without ipywidgets."""
        return self._buttons(answer_getter, with_check=True)

    def _buttons(self, answer_getter: Callable[[], Any] | None, *, with_check: bool) -> Any:
        try:
            import ipywidgets as w
            from IPython import get_ipython
        except ImportError:  # pragma: no cover
            return None
        if get_ipython() is None:
            return None
        out = w.Output()
        level = {"n": min(self.hints_used, len(self.hints))}

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
        actions = [("Check", on_check)] if with_check else []
        actions += [("Hint", on_hint), ("Solution", on_solution)]
        for label, handler in actions:
            b = w.Button(description=label)
            b.on_click(handler)
            buttons.append(b)
        return w.VBox([w.HBox(buttons), out])


SOLUTION_SHOWN = 99


def _show(widget: Any) -> None:
    if widget is None:
        return
    from IPython.display import display

    display(widget)


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
    "capstone": "lab5_capstone",
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


def tasks_of(lab: Any) -> list[Task]:
    return [t for t in vars(lab).values() if isinstance(t, Task)]


def summary(lab: Any) -> Any:
    """A table of the lab's tasks and their latest verdicts (tasks never checked show 'not attempted')."""
    import pandas as pd

    rows = []
    for task in tasks_of(lab):
        last = task.last
        rows.append(
            {
                "task": task.name,
                "title": task.title,
                "status": last.status if last else NOT_ATTEMPTED,
                "points": last.points if last else 0.0,
                "max_points": task.points,
            }
        )
    return pd.DataFrame(rows)


def check_all(lab: Any) -> None:
    """Check every task of ``lab`` again, each with the answer it was last checked with (the state a
    task left may have changed since), print one line per task and the points, and return nothing."""
    earned = total = 0.0
    for task in tasks_of(lab):
        task.last = task.evaluate(task.last_answer)
        _publish(task.last)
        earned, total = earned + task.last.points, total + task.points
    print(f"🏁 {earned:g}/{total:g} points")
