"""``sharelab batch``: papermill over tiny notebooks in a tmp repository layout, with the real server."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import server
from helpers.batch import discover, load_parameters, parse_value, run_batch
from helpers.cli import main
from helpers.exceptions import InvalidArgumentError, NotFoundError
from tests.support import free_port


def _notebook(path: Path, *cells: str, params: str | None = None) -> Path:
    nb = new_notebook()
    if params is not None:
        nb.cells.append(new_code_cell(params, metadata={"tags": ["parameters"]}))
    nb.cells += [new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


FIGURES = "import helpers.notebook as nb\nnb.key_figures({figures})"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository layout: two notebooks and one lab solution."""
    r = tmp_path / "repo"
    _notebook(
        r / "notebooks" / "00_first.ipynb",
        "import os\nimport helpers.notebook as nb\n"
        "nb.key_figures({'seed': seed, 'home': os.environ['SHARELAB_HOME'], "
        "'server': nb.server_state() is not None})",
        params="seed = 1  # random seed",
    )
    _notebook(r / "notebooks" / "01_second.ipynb", FIGURES.format(figures="{'rows': 3 * 7}"))
    _notebook(
        r / "labs" / "solutions" / "lab1.ipynb",
        FIGURES.format(figures="{'scale': scale}"),
        params="scale = 'small'  # dataset size",
    )
    return r


def test_discover_order_and_only(root: Path) -> None:
    names = [p.relative_to(root).as_posix() for p in discover(root)]
    assert names == [
        "notebooks/00_first.ipynb",
        "notebooks/01_second.ipynb",
        "labs/solutions/lab1.ipynb",
    ]
    assert [p.name for p in discover(root, ["notebooks/*"])] == [
        "00_first.ipynb",
        "01_second.ipynb",
    ]
    assert [p.name for p in discover(root, ["01_*", "lab1"])] == ["01_second.ipynb", "lab1.ipynb"]


def test_parameters(tmp_path: Path) -> None:
    assert (
        parse_value("7") == 7 and parse_value("true") is True and parse_value("medium") == "medium"
    )
    assert parse_value("2.5") == 2.5 and parse_value("") == ""
    f = tmp_path / "p.yaml"
    f.write_text("seed: 3\nscale: medium\n")
    assert load_parameters([("seed", "9")], [f]) == {"seed": 9, "scale": "medium"}
    with pytest.raises(NotFoundError):
        load_parameters((), [tmp_path / "missing.yaml"])
    f.write_text("- a\n- b\n")
    with pytest.raises(InvalidArgumentError, match="mapping"):
        load_parameters((), [f])
    f.write_text("a: [\n")
    with pytest.raises(InvalidArgumentError, match="YAML"):
        load_parameters((), [f])


def test_batch_runs_every_notebook_and_summarises(
    root: Path, lab_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_batch(
        {"seed": 7, "scale": "medium", "unused": 1},
        root=root,
        home=lab_home,
        port=free_port(),
        out=out,
        echo=False,
    )
    assert [r.status for r in result.runs] == ["ok", "ok", "ok"]
    first, second, lab = result.runs
    # Each notebook gets only the parameters it declares.
    assert (
        first.parameters == {"seed": 7}
        and second.parameters == {}
        and lab.parameters == {"scale": "medium"}
    )
    assert first.key_figures == {"seed": 7, "home": str(lab_home), "server": True}
    assert second.key_figures == {"rows": 21} and lab.key_figures == {"scale": "medium"}
    assert result.server_started and server.status(lab_home) is None  # started, then stopped
    executed = nbformat.read(out / "notebooks" / "00_first.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and len(summary["notebooks"]) == 3
    html = (out / "summary.html").read_text()
    assert "labs/solutions/lab1.ipynb" in html and "scale" in html and "3 of 3 notebooks ok" in html


def test_batch_failure_exits_non_zero(root: Path, lab_home: Path, tmp_path: Path, capsys) -> None:
    _notebook(root / "notebooks" / "00_first.ipynb", "raise ValueError('boom')")
    args = ["--home", str(lab_home), "batch", "--root", str(root), "--port", str(free_port())]
    assert main([*args, "--out", str(tmp_path / "a")]) == 1
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["failed", "skipped", "skipped"]
    assert "ValueError: boom" in summary["notebooks"][0]["error"]
    assert "failed: notebooks/00_first.ipynb" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--keep-going", "-p", "scale", "x"]) == 1
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["failed", "ok", "ok"]
    assert summary["notebooks"][2]["key_figures"] == {"scale": "x"}
    assert server.status(lab_home) is None


def test_batch_leaves_a_running_server_running(
    root: Path, lab_home: Path, tmp_path: Path, server_factory
) -> None:
    running = server_factory(lab_home)
    result = run_batch(root=root, home=lab_home, out=tmp_path / "out", only=["01_*"], echo=False)
    assert result.ok and not result.server_started
    assert running.process.poll() is None


def test_batch_without_notebooks(tmp_path: Path, lab_home: Path) -> None:
    with pytest.raises(NotFoundError, match="no notebook"):
        run_batch(root=tmp_path, home=lab_home, echo=False)


def test_in_place_reference_run(root: Path, lab_home: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="default parameters"):
        run_batch({"seed": 3}, root=root, home=lab_home, in_place=True, echo=False)
    result = run_batch(
        root=root, home=lab_home, port=free_port(), out=tmp_path / "o", in_place=True, echo=False
    )
    assert result.ok
    source = nbformat.read(root / "notebooks" / "01_second.ipynb", as_version=4)
    assert source.cells[0].outputs, "the source notebook now carries the outputs"
    assert not (tmp_path / "o" / "notebooks").exists()
    assert (tmp_path / "o" / "summary.html").is_file()
