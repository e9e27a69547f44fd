"""``sharelab workshop add|board|grade`` as an instructor types them."""

from __future__ import annotations

from pathlib import Path

from tests.support import sharelab
from tests.workshop import minilab

ENDPOINT = "https://198.51.100.10:8443/delta-sharing/"


def test_workshop_add_board_grade(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    minilab.build(home)
    roster = tmp_path / "roster.csv"
    roster.write_text("name\ncy\n")
    done = sharelab(
        home, "workshop", "add", "ada", "bo", "--csv", str(roster), "--endpoint", ENDPOINT
    )
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if not ln.startswith("#")]
    assert [ln.split("\t")[0] for ln in lines] == ["ada", "bo", "cy"]
    assert all(ln.split("\t")[1].startswith(ENDPOINT + "activation/") for ln in lines)
    board = sharelab(home, "workshop", "board")
    assert board.returncode == 0, board.stderr
    assert "ada" in board.stdout and "start the server" in board.stdout
    grades = sharelab(home, "workshop", "grade", "--csv", str(tmp_path / "g.csv"))
    assert grades.returncode == 0, grades.stderr
    assert (tmp_path / "g.csv").read_text().splitlines()[0] == "attendee,activated,passed,score"
    bad = sharelab(home, "workshop", "add", "dee", "--share", "nope", "--endpoint", ENDPOINT)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    nohub = sharelab(home, "workshop", "hub", "status")
    assert nohub.returncode == 0 and "no hub running" in nohub.stdout
