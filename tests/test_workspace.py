"""The learner's workspace: JupyterLab opens on copies of the notebooks and lab exercises, never on the
tracked files; ``sharelab jupyter reset NAME`` restores one copy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from helpers import workspace
from helpers.cli import main
from helpers.exceptions import NotFoundError
from helpers.notebook import REPO_ROOT


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_copies_exercises_not_solutions(tmp_path: Path) -> None:
    work = workspace.prepare(tmp_path / "work")
    names = sorted(str(p.relative_to(work)) for p in work.rglob("*.ipynb"))
    assert (
        "labs/lab1_provider.ipynb" in names and "notebooks/03_recipient_open_client.ipynb" in names
    )
    assert not any("solutions" in n for n in names), names
    shipped = sorted(str(p) for p in workspace.shipped())
    assert names == shipped
    for rel in names:
        assert _digest(work / rel) == _digest(REPO_ROOT / rel)


def test_edits_stay_and_reset_restores_one_copy(tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    tracked = REPO_ROOT / "labs" / "lab1_provider.ipynb"
    before = _digest(tracked)
    workspace.prepare(work)
    copy = work / "labs" / "lab1_provider.ipynb"
    other = work / "notebooks" / "03_recipient_open_client.ipynb"
    copy.write_text(json.dumps({"edited": True}))
    other.write_text(json.dumps({"edited": True}))
    workspace.prepare(work)  # a second start keeps the learner's edits
    assert json.loads(copy.read_text()) == {"edited": True}
    assert main(["jupyter", "reset", "lab1", "--work", str(work)]) == 0
    assert "restored" in capsys.readouterr().out
    assert _digest(copy) == before  # back as shipped
    assert json.loads(other.read_text()) == {"edited": True}  # only that one
    assert workspace.reset("03", work) == other and _digest(other) == _digest(
        REPO_ROOT / "notebooks" / "03_recipient_open_client.ipynb"
    )
    assert _digest(tracked) == before  # the tracked file was never touched


def test_reset_unknown_name_says_which_exist(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="lab1_provider"):
        workspace.reset("lab9", tmp_path / "work")
    with pytest.raises(NotFoundError, match="several"):
        workspace.reset("0", tmp_path / "work")
    assert main(["jupyter", "reset", "nope", "--work", str(tmp_path / "w")]) != 0


def test_profile_of_a_moved_server_names_the_cause(lab_home: Path, server_factory) -> None:
    """After the provider moved port, an old profile's failure says so instead of a bare 'unreachable'."""
    import helpers.notebook as nb
    from helpers.exceptions import ServerError
    from tests.support import free_port

    server = server_factory(lab_home)
    old_port = free_port()
    profile = lab_home / "old.share"
    profile.write_text(
        json.dumps(
            {
                "shareCredentialsVersion": 1,
                "endpoint": f"http://127.0.0.1:{old_port}/delta-sharing/",
                "bearerToken": "x" * 40,
            }
        )
    )
    with pytest.raises(ServerError, match=f"now listens on port {server.port}") as err:
        nb.require_profile(profile)
    assert f"127.0.0.1:{old_port}" in str(err.value) and "re-run notebook 02" in str(err.value)
