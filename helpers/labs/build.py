"""Exercise notebooks are generated from the solution notebooks, so the two cannot drift.

In a solution notebook, the learner's part of a cell sits between ``# BEGIN SOLUTION`` and
``# END SOLUTION`` (``-- BEGIN SOLUTION`` inside SQL text). The exercise keeps everything else and puts
one ``____`` line, indented like the marker, in place of each marked region; outputs are cleared.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from helpers.exceptions import InvalidArgumentError
from helpers.labs.core import BEGIN, END, LABS_DIR, marker


def strip_solutions(source: str, *, where: str = "cell") -> str:
    """Replace each marked region of ``source`` by a ``____`` line."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), 1):
        kind = marker(line)
        if kind == BEGIN:
            if inside:
                raise InvalidArgumentError(
                    f"{where}, line {number}: nested '{BEGIN}'; close the first with '{END}'"
                )
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}____")
        elif kind == END:
            if not inside:
                raise InvalidArgumentError(f"{where}, line {number}: '{END}' without '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise InvalidArgumentError(f"{where}: '{BEGIN}' is never closed; add '{END}'")
    return "\n".join(out)


def exercise_from_solution(
    solution: nbformat.NotebookNode, *, name: str = "notebook"
) -> nbformat.NotebookNode:
    """The exercise notebook for a solution notebook: marked regions blanked, outputs cleared."""
    nb = nbformat.from_dict(solution)
    cells = []
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if "solution-only" in tags:
            continue
        # a reference run's traces (timings, papermill state) do not belong in an exercise
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if not cell.metadata.get("tags", True):
            del cell.metadata["tags"]
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where=f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("papermill", None)
    return nb


def build(labs_dir: Path = LABS_DIR, *, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, compare) every exercise generated from ``labs/solutions/*.ipynb``.

    :returns: the exercise paths that were written, or that differ when ``check`` is set.
    """
    changed: list[Path] = []
    for solution_path in sorted((labs_dir / "solutions").glob("*.ipynb")):
        solution = nbformat.read(solution_path, as_version=4)
        exercise = exercise_from_solution(solution, name=solution_path.name)
        target = labs_dir / solution_path.name
        text = nbformat.writes(exercise) + "\n"
        if target.exists() and target.read_text() == text:
            continue
        changed.append(target)
        if not check:
            target.write_text(text)
    return changed
