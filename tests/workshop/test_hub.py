"""The hub route: JupyterHub over TLS, one OS user and JupyterLab per attendee, driven through the REST API.

Ten attendees are provisioned (recipient, grants, OS user, profile and CA in the home, join code); one
signs in through the login form, all servers are started through the hub's REST API at once; in each
attendee's kernel the share is read with the official client over TLS in both formats and a lab result is
reported; then isolation (another attendee's files, the instructor's catalog, the hub's admin API), the
board's numbers, the idle culler and a hub restart that keeps the roster.

Skipped unless root with ``useradd``, the npm proxy (``hub/node_modules``) and the attendees' virtual
environment (``.hub-venv``) are there (``./run-demo.sh workshop`` installs both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers.catalog import open_catalog
from helpers.catalog.workshop import WorkshopStore
from helpers.home import LabHome
from helpers.server.lifecycle import start as start_provider
from helpers.server.lifecycle import stop as stop_provider
from helpers.workshop import hub
from tests.support import free_port
from tests.workshop import minilab
from tests.workshop.hubclient import Hub

pytestmark = pytest.mark.slow

N = 10
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
    tag = f"{os.getpid() % 1000:03d}"
    names = [f"h{tag}n{i}" for i in range(N)]
    start_provider(home, port=free_port(), tls=True)
    joins: list = []
    try:
        joins = hub.provision(home, names)
        port = free_port()
        state = hub.start(home, host="127.0.0.1", port=port)
        h = Hub(state["url"], hub.api_token(home), str(home.path / "tls" / "ca.pem"))
        yield home, h, joins
    finally:
        st = hub.status(home)
        if st:
            h = Hub(st["url"], hub.api_token(home), str(home.path / "tls" / "ca.pem"))
            for _name, user, _code in joins:
                h.api("DELETE", f"/users/{user}/server")
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
    assert all(r.progress == {"lab2_recipient": {"r1": "passed"}} for r in board.values())


def test_attendees_are_isolated(classroom: tuple[LabHome, Hub, list]) -> None:
    home, h, joins = classroom
    (_a, user_a, code_a), (_b, user_b, _cb) = joins[0], joins[1]
    paths = [f"/home/{user_b}/me.share", str(home.catalog_path), str(home.path / "tls" / "ca.key")]
    probe = (
        f"for p in {paths!r}:\n"
        "    try:\n        open(p, 'rb').read(1); print('READ', p)\n"
        "    except PermissionError:\n        print('denied')\n"
    )
    out = h.run(user_a, probe)
    assert out["stdout"].split() == ["denied"] * 3, out
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
