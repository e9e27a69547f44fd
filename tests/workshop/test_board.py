"""The roster, progress reports, the instructor's board and grading (in-process server, no network)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from helpers.catalog import open_catalog
from helpers.catalog.workshop import WorkshopStore
from helpers.exceptions import InvalidArgumentError, NotFoundError
from helpers.home import LabHome
from helpers.server.app import create_app
from helpers.server.workshop import instructor_token
from helpers.workshop import add_attendees, grade_frame, read_roster_csv, write_grades
from tests.workshop import minilab

ENDPOINT = "https://198.51.100.10:8443/delta-sharing/"
Q = "/delta-sharing/shares/demo_share/schemas/s/tables/t/query"


@pytest.fixture
def room(tmp_path: Path) -> Iterator[tuple[LabHome, TestClient, dict[str, str]]]:
    home = LabHome.resolve(tmp_path / "home")
    minilab.build(home.path)
    joins = add_attendees(open_catalog(home), home, ["ada", "bo", "cy"], endpoint=ENDPOINT)
    links = {j.name: j.link for j in joins}
    with TestClient(create_app(home)) as client:
        yield home, client, links


def _wait(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_add_attendees_makes_recipients_grants_and_links(tmp_path: Path) -> None:
    home = LabHome.resolve(tmp_path / "home")
    minilab.build(home.path)
    catalog = open_catalog(home)
    joins = add_attendees(catalog, home, ["ada", "bo"], endpoint=ENDPOINT)
    assert [j.name for j in joins] == ["ada", "bo"]
    assert all(j.link.startswith(ENDPOINT + "activation/") for j in joins)
    assert catalog.has_grant("demo_share", "ada") and catalog.has_grant("demo_share", "bo")
    again = add_attendees(catalog, home, ["ada"], endpoint=ENDPOINT)  # a lost link: a new one
    assert again[0].link != joins[0].link
    assert WorkshopStore(catalog).roster() == ["ada", "bo"]
    with pytest.raises(InvalidArgumentError, match="twice"):
        add_attendees(catalog, home, ["cy", "CY"], endpoint=ENDPOINT)
    with pytest.raises(NotFoundError):
        add_attendees(catalog, home, ["cy"], shares=["nope"], endpoint=ENDPOINT)
    with pytest.raises(InvalidArgumentError, match="no server runs"):
        add_attendees(catalog, home, ["cy"])
    roster = tmp_path / "roster.csv"
    roster.write_text("email,name\nd@x.org,dee\ne@x.org,eve\n")
    assert read_roster_csv(roster) == ["dee", "eve"]
    roster.write_text("fay\ngus\n")
    assert read_roster_csv(roster) == ["fay", "gus"]


def test_board_progress_and_grades(
    room: tuple[LabHome, TestClient, dict[str, str]], tmp_path: Path
) -> None:
    home, client, links = room
    ada = client.get(links["ada"].replace(ENDPOINT.rstrip("/"), "/delta-sharing")).json()
    bo = client.get(links["bo"].replace(ENDPOINT.rstrip("/"), "/delta-sharing")).json()
    auth_a = {"Authorization": f"Bearer {ada['bearerToken']}"}
    auth_b = {"Authorization": f"Bearer {bo['bearerToken']}"}
    assert client.post(Q, json={}, headers=auth_a).status_code == 200
    assert client.get("/delta-sharing/shares/other", headers=auth_b).status_code == 404
    report = {
        "lab": "lab2_recipient",
        "results": [{"task": "r1", "status": "passed"}, {"task": "r2", "status": "failed"}],
    }
    r = client.post("/workshop/progress", json=report, headers=auth_a)
    assert r.status_code == 200 and r.json() == {"stored": 2}
    report["results"] = [{"task": "r2", "status": "passed"}]
    assert client.post("/workshop/progress", json=report, headers=auth_a).json() == {"stored": 1}
    bad = {"lab": "lab2_recipient", "results": [{"task": "r1", "status": "great"}]}
    assert client.post("/workshop/progress", json=bad, headers=auth_b).status_code == 400
    assert client.post("/workshop/progress", json=report).status_code == 401  # no token
    # the board is the instructor's: 404 without the token (the test client is not on loopback)
    assert client.get("/workshop/board.json").status_code == 404
    token = instructor_token(home, create=True)
    assert client.get("/workshop/board.json?token=wrong").status_code == 404

    def board() -> dict[str, Any] | None:
        data: dict[str, Any] = client.get(f"/workshop/board.json?token={token}").json()
        rows = {a["name"]: a for a in data["attendees"]}
        return data if rows["ada"]["tables_read"] and rows["bo"]["errors"]["404"] else None

    data = _wait(board)
    assert data is not None, "the audit rows never reached the board"
    rows = {a["name"]: a for a in data["attendees"]}
    assert rows["ada"]["activated"] and rows["bo"]["activated"] and not rows["cy"]["activated"]
    assert rows["ada"]["tables_read"] == ["demo_share.s.t"]
    assert rows["ada"]["progress"] == {"lab2_recipient": {"r1": "passed", "r2": "passed"}}
    assert rows["cy"]["last_request"] is None and rows["cy"]["requests"] == 0
    assert data["activated"] == 2 and data["size"] == 3
    assert {(t["task"], t["passed"]) for t in data["tasks"]} == {("r1", 1), ("r2", 1)}
    page = client.get("/workshop/board", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200 and "<svg" in page.text and "ada" in page.text

    frame = grade_frame(WorkshopStore(open_catalog(home)).board())
    assert list(frame["attendee"]) == ["ada", "bo", "cy"]
    assert list(frame["score"]) == [1.0, 0.0, 0.0]
    out = write_grades(frame, tmp_path / "grades.csv")
    assert out.read_text().splitlines()[0] == (
        "attendee,activated,lab2_recipient/r1,lab2_recipient/r2,passed,score"
    )


def test_report_progress_from_the_recipient_side(
    room: tuple[LabHome, TestClient, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``helpers.recipient.progress`` posts to the profile's server with the profile's own token."""
    import requests

    from helpers.recipient import progress
    from helpers.recipient.profile_files import write_profile

    home, client, links = room
    cy = client.get(links["cy"].replace(ENDPOINT.rstrip("/"), "/delta-sharing")).json()
    prof = write_profile(
        dict(cy, endpoint="http://testserver/delta-sharing/"), tmp_path / "cy.share"
    )
    monkeypatch.setattr(requests, "post", client.post)
    assert progress.report_progress(prof, "lab1", [{"task": "p1", "status": "passed"}]) == 1
    assert progress.report_from_env("lab1", []) is None  # not opted in: nothing sent
    monkeypatch.setenv(progress.REPORT_ENV, str(prof))
    assert progress.report_from_env("lab1", [{"task": "p2", "status": "failed"}]) == 1
    assert WorkshopStore(open_catalog(home)).progress()["cy"]["lab1"] == {
        "p1": "passed",
        "p2": "failed",
    }


def test_board_widget_shows_the_room(room: tuple[LabHome, TestClient, dict[str, str]]) -> None:
    from helpers.workshop.board_widget import board_frame, board_widget

    home, client, links = room
    ada = client.get(links["ada"].replace(ENDPOINT.rstrip("/"), "/delta-sharing")).json()
    auth = {"Authorization": f"Bearer {ada['bearerToken']}"}
    report = {"lab": "lab1", "results": [{"task": "p1", "status": "passed"}]}
    assert client.post("/workshop/progress", json=report, headers=auth).status_code == 200
    box = board_widget(home.path, start=False)
    assert "1 of 3" in box.children[0].value
    assert "✔" in box.children[2].value and "ada" in box.children[2].value
    frame = board_frame(WorkshopStore(open_catalog(home)).board())
    assert list(frame["lab1 p1"]) == ["✔", "", ""]
