"""The check machinery without a notebook: answer forms, the verdict line and what check() returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.labs.core import FAILED, NOT_ATTEMPTED, PASSED, Task, ____, expect, normalize


@pytest.mark.parametrize(
    "answer",
    [
        (200, 8),
        [200, 8],
        pd.Series([200, 8]),
        np.array([200, 8]),
        pd.DataFrame({"n": [200], "c": [8]}),
        (np.int64(200), np.int64(8)),
    ],
)
def test_a_pair_is_accepted_in_every_python_form(answer: object) -> None:
    def checker(value: object) -> None:
        expect(isinstance(value, tuple | list) and len(value) == 2, "a pair")
        expect(tuple(int(v) for v in value) == (200, 8), "wrong pair")  # type: ignore[union-attr]

    assert Task("t", "q", "pair", checker).evaluate(answer).status == PASSED


@pytest.mark.parametrize(
    "answer", [42, np.int64(42), pd.DataFrame({"n": [42]}), pd.Series([42]), np.array(42)]
)
def test_a_scalar_is_accepted_as_a_numpy_value_or_a_dataframe_cell(answer: object) -> None:
    value = normalize(answer)
    assert value == 42 and type(value) is int


def test_normalize_leaves_other_answers_alone() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    assert normalize(frame) is frame
    assert normalize("text") == "text"
    assert normalize(pd.Series([], dtype=int)) == ()


def test_check_prints_one_line_and_returns_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    def checker(value: object) -> None:
        expect(value == 1, "1 is the answer to look for; COMMENT ON SHARE gets you out")

    task = Task("t", "q", "one", checker, hints=("first", "second"))
    assert task.check(____) is None
    assert task.last is not None and task.last.status == NOT_ATTEMPTED
    assert task.check(2) is None
    assert task.last.status == FAILED
    task.hint(2)
    assert task.check(1) is None
    out = capsys.readouterr().out.splitlines()
    verdicts = [ln for ln in out if ln.startswith(("✅", "❌", "⏳"))]
    assert len(verdicts) == 3 and "CheckResult" not in "\n".join(out)
    assert task.last.status == PASSED and task.last.hints == 2
