"""What a learner reads says what things are: no words from how the lab was made.

The lab was built from five source systems (the Databricks course, the Redshift multi-domain scenario, the
data-mesh designs, a retail warehouse comparison); learners meet them by those names, never as numbered
"seeds". A random seed (``seed = 42``, ``-p seed 7``) is a different thing and is fine.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from helpers.notebook import REPO_ROOT

JARGON = re.compile(
    r"\bseeds? ?\d{3}\b|\bseed(?:'s| course| system| README)|\bthe seed\b|trap fixed",
    re.IGNORECASE,
)
NOTEBOOKS = sorted([*REPO_ROOT.glob("notebooks/*.ipynb"), *REPO_ROOT.glob("labs/**/*.ipynb")])
DOCS = sorted(
    [REPO_ROOT / "README.md", REPO_ROOT / "docker" / "README.md", *REPO_ROOT.glob("docs/*.md")]
)


def _notebook_texts(path: Path) -> list[tuple[str, str]]:
    """(where, text) for every cell's source and every text output of a notebook."""
    nb = nbformat.read(path, as_version=4)
    texts = []
    for i, cell in enumerate(nb.cells):
        texts.append((f"cell {i}", cell.source))
        for out in cell.get("outputs", []):
            texts.append((f"cell {i} output", str(out.get("text", ""))))
            for kind, value in out.get("data", {}).items():
                if kind.startswith("text/") and isinstance(value, str):
                    texts.append((f"cell {i} output {kind}", value))
    return texts


def test_the_pattern_finds_jargon_and_spares_random_seeds() -> None:
    for bad in (
        "seed 000's topology",
        "Seed 004 lesson 2.3",
        "the seed course",
        "with its trap fixed",
    ):
        assert JARGON.search(bad), bad
    for fine in ("seed = 42  # random seed", "-p seed 7", "the same scale and seed give", "seed=7"):
        assert not JARGON.search(fine), fine


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_notebooks_and_labs_have_no_jargon(path: Path) -> None:
    hits = [
        f"{where}: {m.group(0)!r}"
        for where, text in _notebook_texts(path)
        for m in JARGON.finditer(text)
    ]
    assert not hits, f"{path.name}: name the real thing instead: {hits}"


def test_docs_have_no_jargon() -> None:
    hits = [
        f"{p.relative_to(REPO_ROOT)}:{n}: {line.strip()[:100]}"
        for p in DOCS
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if JARGON.search(line)
    ]
    assert not hits, hits


LESSONS = sorted(REPO_ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lessons_open_with_objectives_and_close_with_a_recap_and_self_check(path: Path) -> None:
    """Course scaffolding: objectives, prerequisites and minutes before the first code cell; a recap and
    2-3 self-check questions whose answers a learner can check (a <details> answer or a checking cell)."""
    nb = nbformat.read(path, as_version=4)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    opening = "\n".join(c.source for c in nb.cells[:first_code] if c.cell_type == "markdown")
    for word, pattern in [
        ("objectives", r"\bobjectives?\b"),
        ("prerequisites", r"\bprerequisites?\b"),
        ("minutes", r"\bminutes?\b"),
    ]:
        assert re.search(pattern, opening, re.IGNORECASE), (
            f"{path.name}: no {word} before the first code cell"
        )
    markdown = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"]
    assert any(re.search(r"what you learned|\brecap\b", s, re.IGNORECASE) for _, s in markdown), (
        f"{path.name}: no recap ('What you learned')"
    )
    checks = [i for i, s in markdown if re.search(r"check yourself|self-check", s, re.IGNORECASE)]
    assert checks, f"{path.name}: no self-check questions"
    at = checks[-1]
    answered = re.search(r"<details|\banswers?\b", nb.cells[at].source, re.IGNORECASE) or any(
        c.cell_type == "code" for c in nb.cells[at + 1 :]
    )
    assert answered, f"{path.name}: self-check questions without a checkable answer"
