"""The hub route: JupyterHub over TLS, one OS user and JupyterLab per attendee, driven through the REST API.

Eleven attendees are provisioned (recipient, grants, OS user, profile and CA in the home, join code); one
signs in through the login form, all servers are started through the hub's REST API at once; in each
attendee's kernel the share is read with the official client over TLS in both formats and a lab result is
reported. Ten of them do real lessons in their own servers, all at once (notebook 03 and lab 2, each with
their own answers: all right, some wrong, some left undone), and the board must show what each did, task by
task, and ``sharelab workshop grade`` grades their lab notebooks where they are (the eleventh did nothing).
Then isolation (another attendee's files, the instructor's catalog, the hub's admin API), a real Chromium
signing in over TLS (the hub's key pinned) and running notebook 03 until its plots show, the idle culler and
a hub restart that keeps the roster.

The module's tests share one hub (``./run-demo.sh test`` runs with ``--dist loadfile``: one worker, one
hub), and none relies on another having run first: the servers and the lessons are the fixtures' work.

Skipped unless root with ``useradd``, the npm proxy (``hub/node_modules``) and the attendees' virtual
environment (``.hub-venv``) are there (``./run-demo.sh workshop`` installs both).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers.catalog import open_catalog
from helpers.catalog.workshop import BoardRow, WorkshopStore
from helpers.home import LabHome
from helpers.labs import setup
from helpers.server.lifecycle import start as start_provider
from helpers.server.lifecycle import stop as stop_provider
from helpers.workshop import hub
from tests.support import free_port, free_port_run
from tests.workshop import hubbrowser, lessons, minilab
from tests.workshop.hubclient import Hub

pytestmark = pytest.mark.slow

LESSONS = 10  # attendees who do the lessons
N = LESSONS + 1  # and one who does nothing
CODE = """
import getpass, os
from helpers import recipient
p = os.path.expanduser('~/me.share')
a = recipient.load(p, 'demo_share.s.t')
b = recipient.load(p, 'demo_share.s.t', use_delta_format=True)
from helpers.recipient.progress import report_from_env
n = report_from_env('lab2_recipient', [{'task': 'r1', 'status': 'passed'}])
print(getpass.getuser(), len(a), len(b), float(a['v'].sum()), n)
"""


def _why_not() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the hub route makes OS users: needs root"
    if shutil.which("useradd") is None:
        return "useradd is not installed"
    if not (hub.REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        return "the proxy is not installed (npm install --prefix hub)"
    if not (hub.USER_VENV / "bin" / "jupyterhub-singleuser").exists():
        return ".hub-venv is missing (./run-demo.sh workshop makes it)"
    return None


def _kill_processes_of(user: str) -> None:
    """End what is left of a test user's processes (by pid; the user exists only for this test)."""
    ps = subprocess.run(["ps", "-u", user, "-o", "pid="], capture_output=True, text=True)
    for pid in ps.stdout.split():
        try:
            os.kill(int(pid), 15)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabHome, Hub, list]]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    home = LabHome.resolve(tmp_path_factory.mktemp("hub") / "home")
    minilab.build(home.path)
    setup.ensure_dataset("airline", home.path)  # what notebook 03 and lab 2 read
    setup.ensure_airline_topology(home.path)
    tag = f"{os.getpid() % 1000:03d}"
    names = [f"h{tag}n{i}" for i in range(N)]
    start_provider(home, port=free_port(), tls=True)
    joins: list = []
    try:
        joins = hub.provision(home, names)
        port = free_port_run(3)  # the hub's API and proxy take port + 1 and + 2
        state = hub.start(home, host="127.0.0.1", port=port)
        h = Hub(state["url"], hub.api_token(home), str(home.path / "tls" / "ca.pem"))
        yield home, h, joins
    finally:
        st = hub.status(home)
        if st:
            h = Hub(st["url"], hub.api_token(home), str(home.path / "tls" / "ca.pem"))
            # all at once: a server's stop (its kernels) takes 2-6 s, and the hub stops them in parallel
            with ThreadPoolExecutor(len(joins) or 1) as pool:
                list(pool.map(lambda j: h.api("DELETE", f"/users/{j[1]}/server"), joins))
            time.sleep(2)
        hub.stop(home)
        stop_provider(home)
        for _name, user, _code in joins:
            _kill_processes_of(user)
            subprocess.run(["userdel", "-r", user], capture_output=True)


def test_ten_attendees_read_over_tls_in_their_own_servers(
    classroom: tuple[LabHome, Hub, list],
) -> None:
    home, h, joins = classroom
    name0, user0, code0 = joins[0]
    session = h.sign_in(name0, code0)  # the real sign-in form
    assert "jupyterhub-session-id" in session.cookies
    assert "jupyterhub-session-id" not in h.sign_in(name0, "wrong-code").cookies
    users = [u for _n, u, _c in joins]
    created = h.api("POST", "/users", json={"usernames": users[1:]})
    assert created.status_code in (201, 409), created.text
    t0 = time.perf_counter()
    with ThreadPoolExecutor(N) as pool:
        spawn = list(pool.map(h.start_server, users))
    all_up = time.perf_counter() - t0
    with ThreadPoolExecutor(N) as pool:
        outs = list(pool.map(lambda u: h.run(u, CODE), users))
    ran = time.perf_counter() - t0 - all_up
    for user, out in zip(users, outs, strict=True):
        assert out["error"] is None, (user, out)
        assert out["stdout"].split() == [user, "100", "100", str(minilab.SUM_V), "1"], out
    spawn.sort()
    print(
        f"\n{N} servers up in {all_up:.1f} s (spawn p50 {spawn[N // 2]:.1f} s, max {spawn[-1]:.1f} s);"
        f" {N} kernels read both formats in {ran:.1f} s"
    )
    board = {r.name: r for r in WorkshopStore(open_catalog(home)).board()}
    assert len(board) == N and all(r.activated for r in board.values())
    assert all(r.progress.get("lab2_recipient") == {"r1": "passed"} for r in board.values())


ALL = set(lessons.TASKS)
#: per lesson attendee: (tasks answered right, tasks answered wrong); the rest stay ____
PLANS = [
    (ALL, set()),
    (ALL - {"r1"}, {"r1"}),
    ({"r1", "r2", "r3", "r4"}, {"r6"}),
    (ALL - {"r3"}, {"r3"}),
    ({"r2", "r3"}, {"r1"}),
    (set(), set()),
    (ALL, set()),
    ({"r1"}, set()),
    ({"r2", "r4", "r5", "r6"}, {"r1", "r3"}),  # r3 to r5 query r2's connection
    (ALL - {"r6"}, {"r6"}),
]
assert len(PLANS) == LESSONS
LISTED = """
import json, os, delta_sharing
c = delta_sharing.SharingClient(os.path.expanduser('~/me.share'))
print(json.dumps(sorted(f"{t.share}.{t.schema}.{t.name}" for t in c.list_all_tables())))
"""


def _servers_up(h: Hub, users: list[str]) -> None:
    """Every attendee's server running (made and started through the REST API; no-op when they are)."""
    made = h.api("POST", "/users", json={"usernames": users})
    assert made.status_code in (201, 409), made.text
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(h.start_server, users))


@pytest.fixture(scope="module")
def lessons_done(classroom: tuple[LabHome, Hub, list]) -> dict[str, float]:
    """The ten lesson attendees write their lab 2 answers and run notebook 03 and lab 2 in their own
    kernels, all at once; each one's seconds."""
    home, h, joins = classroom
    _servers_up(h, [u for _n, u, _c in joins])
    doers = joins[:LESSONS]
    for (_name, user, _code), (right, wrong) in zip(doers, PLANS, strict=True):
        lessons.do_lab2(user, right, wrong)

    def run(join: tuple[str, str, str]) -> tuple[dict, float]:
        t0 = time.perf_counter()
        return h.run(join[1], lessons.RUN, timeout=900), time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(LESSONS) as pool:
        outs = list(pool.map(run, doers))
    print(
        f"\n{LESSONS} attendees ran notebook 03 and lab 2 at once in {time.perf_counter() - t0:.1f} s"
    )
    for (_name, user, _code), (out, _s) in zip(doers, outs, strict=True):
        assert out["error"] is None, (user, out)
        assert out["stdout"].split() == [user, "ran", "both"], out
    return {user: secs for (_n, user, _c), (_o, secs) in zip(doers, outs, strict=True)}


def _board_when(home: LabHome, done: Callable[[dict[str, BoardRow]], bool]) -> dict[str, BoardRow]:
    """The board once ``done`` holds (the server writes its audit in batches), else as it is after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        board = {r.name: r for r in WorkshopStore(open_catalog(home)).board()}
        if done(board) or time.monotonic() > deadline:
            return board
        time.sleep(0.5)


def test_ten_attendees_do_notebook_03_and_lab_2_and_the_board_shows_it(
    classroom: tuple[LabHome, Hub, list], lessons_done: dict[str, float]
) -> None:
    home, h, joins = classroom
    doers = joins[:LESSONS]
    for _name, user, _code in doers:
        ran = nbformat.read(f"/home/{user}/{lessons.NB03}", as_version=4)
        kinds = {
            k
            for c in ran.cells
            if c.cell_type == "code"
            for o in c.outputs
            for k in o.get("data", {})
        }
        assert "image/png" in kinds, user  # the dashboard's plots, drawn in the attendee's kernel
    listed = set(json.loads(h.run(doers[0][1], LISTED)["stdout"]))
    assert len(listed) > 10 and "demo_share.s.t" in listed
    want = {n: lessons.expected(*plan) for (n, _u, _c), plan in zip(doers, PLANS, strict=True)}
    mounted = {n for (n, _u, _c), (right, _w) in zip(doers, PLANS, strict=True) if "r2" in right}
    board = _board_when(
        home,
        lambda b: (
            all(b[n].progress.get("recipient") == w for n, w in want.items())
            and all(set(b[n].tables_read) == listed for n in mounted)
        ),
    )
    for (name, _user, _code), (right, _wrong) in zip(doers, PLANS, strict=True):
        row = board[name]
        assert row.activated
        assert row.progress["recipient"] == want[name], (name, row.progress)
        first = row.progress.get("lab2_recipient", {}).get("r1") == "passed"  # the reading test's
        assert row.passed == len(right) + first
        if name in mounted:  # lab 2's task r2 mount()s every table of the profile
            assert set(row.tables_read) == listed
        else:  # notebook 03 alone reads some of them
            assert set(row.tables_read) < listed and row.tables_read
        assert row.errors == {401: 0, 403: 0, 404: 0}
    # who did nothing has no lesson progress, at most the first test's read
    idle = board[joins[LESSONS][0]]
    assert set(idle.tables_read) <= {"demo_share.s.t"} and "recipient" not in idle.progress
    secs = sorted(lessons_done.values())
    print(f"per attendee: p50 {secs[len(secs) // 2]:.1f} s, max {secs[-1]:.1f} s")


def test_workshop_grade_grades_the_notebooks_where_they_are(
    classroom: tuple[LabHome, Hub, list], lessons_done: dict[str, float], tmp_path: Path
) -> None:
    home, _h, joins = classroom
    graded = [n for n, _u, _c in joins]  # the ten who worked and one who did not
    out = tmp_path / "grades.csv"
    env = dict(os.environ, SHARELAB_HOME=str(home.path))
    env.pop("SHARELAB_REPORT_PROGRESS", None)
    before = {r.name: r.progress for r in WorkshopStore(open_catalog(home)).board()}
    done = subprocess.run(
        [sys.executable, "-m", "helpers", "workshop", "grade", *graded, "--csv", str(out)],
        capture_output=True, text=True, env=env, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out).set_index("learner")
    assert list(table.index) == graded
    for name, (right, wrong) in zip(graded[:LESSONS], PLANS, strict=True):
        assert table.loc[name, "passed"] == f"{len(right)}/{len(lessons.TASKS)}", table.loc[name]
        want = lessons.expected(right, wrong)
        assert {t: table.loc[name, t] for t in lessons.TASKS} == want
        full = table.loc[name, "points"] == table.loc[name, "max_points"]
        assert full == (len(right) == len(lessons.TASKS)), table.loc[name]
    idle = graded[-1]
    assert {table.loc[idle, t] for t in lessons.TASKS} == {"not attempted"}
    assert f"{graded[0]}" in done.stdout and "6/6" in done.stdout
    after = {r.name: r.progress for r in WorkshopStore(open_catalog(home)).board()}
    assert after == before  # grading is not the attendees working: it reported nothing
    wrong_name = subprocess.run(
        [sys.executable, "-m", "helpers", "workshop", "grade", "nobody_here"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert wrong_name.returncode != 0 and "not hub attendees" in wrong_name.stderr
    assert "Traceback" not in wrong_name.stderr


def test_a_browser_signs_in_over_tls_and_sees_notebook_03s_plots(
    classroom: tuple[LabHome, Hub, list], tmp_path: Path
) -> None:
    if not hubbrowser.CHROMIUM.is_file():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium")
    pytest.importorskip("playwright", reason="pip install -e '.[test]' -c constraints.txt")
    home, h, joins = classroom
    name, user, code = joins[3]
    _servers_up(h, [user])  # running since the first test (the hub's spawn page would start it too)
    pins = hubbrowser.spki_pin(home.path / "tls" / "server.pem")
    assert len(pins) == 2  # the server's key and the lab CA's
    with hubbrowser.chromium(tmp_path / "chromium", pins) as page:
        hubbrowser.sign_in(page, h.url, name, code)
        page.wait_for_url(f"**/user/{user}/**", timeout=120_000)
        images = hubbrowser.run_all(page, f"{h.url}/user/{user}", lessons.NB03)
        errors = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        ).all_inner_texts()
    assert not [e for e in errors if "Traceback" in e], errors[:2]
    assert images and images[0].startswith("data:image/png;base64,") and len(images[0]) > 20_000
    # another key is not trusted: the pin does not turn verification off
    other = [base64.b64encode(bytes(32)).decode()]
    with hubbrowser.chromium(tmp_path / "chromium-2", other) as page:
        with pytest.raises(Exception, match="ERR_CERT"):
            page.goto(f"{h.url}/hub/login")


def test_attendees_are_isolated(classroom: tuple[LabHome, Hub, list]) -> None:
    home, h, joins = classroom
    (_a, user_a, code_a), (_b, user_b, _cb) = joins[0], joins[1]
    paths = [f"/home/{user_b}/me.share", str(home.catalog_path), str(home.path / "tls" / "ca.key")]
    probe = (
        f"for p in {paths!r}:\n"
        "    try:\n        open(p, 'rb').read(1); print('READ', p)\n"
        "    except PermissionError:\n        print('denied')\n"
    )
    probe += (
        "import json, ipykernel.connect as c\n"
        "info = json.loads(c.get_connection_info()); print(info['transport'], info['ip'])\n"
    )
    out = h.run(user_a, probe)
    *denied, transport, where = out["stdout"].split()
    assert denied == ["denied"] * 3, out
    # its kernel is on unix sockets in its own home: no port another attendee could connect to
    assert transport == "ipc" and where.startswith(f"/home/{user_a}/"), out
    session = h.sign_in(_a, code_a)
    api = session.get(f"{h.url}/hub/api/users", timeout=30)
    assert api.status_code == 403  # not an admin: no user list, no admin pages
    other = session.get(f"{h.url}/user/{user_b}/api/contents", timeout=30, allow_redirects=False)
    assert other.status_code in (302, 403, 404), other.status_code
    assert f"/user/{user_b}/" not in other.headers.get("location", "")


def test_idle_culler_runs_and_the_roster_survives_a_restart(
    classroom: tuple[LabHome, Hub, list],
) -> None:
    home, h, joins = classroom
    services = h.api("GET", "/services").json()
    assert "idle-culler" in services and services["idle-culler"].get("command")
    assert hub.stop(home)
    state = hub.start(home, host="127.0.0.1", port=int(h.url.rsplit(":", 1)[1]))
    h2 = Hub(state["url"], h.token, h.ca)
    names = {u["name"] for u in h2.api("GET", "/users").json()}
    assert {u for _n, u, _c in joins} <= names
    name, user, code = joins[2]
    assert "jupyterhub-session-id" in h2.sign_in(name, code).cookies
    out = h2.run(user, "import getpass; print(getpass.getuser())")  # its server kept running
    assert out["stdout"].strip() == user
