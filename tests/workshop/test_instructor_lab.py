"""The instructor's JupyterLab in the hub route: on a root-only unix socket, no TCP port, so an attendee's
OS user cannot reach it (the connection is refused before a byte is sent), while root gets its API.

Skipped unless root with ``useradd`` (the attendee is a real OS user made for the test).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.home import LabHome
from helpers.workshop import instructor_lab

pytestmark = pytest.mark.slow

PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print("connected")
except PermissionError:
    print("denied")
"""


@pytest.fixture
def attendee() -> Iterator[str]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd (the attendee is an OS user)")
    user = f"sl-t{os.getpid() % 100000}"
    subprocess.run(["useradd", "--create-home", "--user-group", user], check=True)
    try:
        yield user
    finally:
        subprocess.run(["userdel", "-r", user], capture_output=True)


def _listening_pids() -> str:
    return subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout


def test_an_attendee_cannot_reach_the_instructors_jupyterlab(attendee: str, tmp_path: Path) -> None:
    home = LabHome.resolve(tmp_path / "home")
    nb_dir = tmp_path / "instructor-notebooks"
    nb_dir.mkdir()
    state = instructor_lab.start(home, notebook_dir=nb_dir)
    try:
        sock = Path(state["socket"])
        assert sock.parent.stat().st_mode & 0o777 == 0o700 and sock.parent.stat().st_uid == 0
        # root (the instructor, or their SSH forward) gets the API
        code, body = instructor_lab.get(sock, "/api/status", state["token"])
        assert code == 200 and b"kernels" in body
        assert instructor_lab.get(sock, "/api/status", "wrong-token")[0] == 403
        # it holds no TCP port: nothing to connect to on 127.0.0.1
        assert f"pid={state['pid']}," not in _listening_pids()
        # the attendee's own process: refused by the file system
        pw = pwd.getpwnam(attendee)
        done = subprocess.run(
            ["/usr/bin/python3", "-c", PROBE, str(sock)],
            user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], capture_output=True, text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir}, cwd=pw.pw_dir, timeout=60,
        )  # fmt: skip
        assert done.stdout.strip() == "denied", done.stdout + done.stderr
        assert instructor_lab.start(home)["pid"] == state["pid"]  # idempotent
    finally:
        assert instructor_lab.stop(home)
    assert instructor_lab.status(home) is None


def test_a_deep_lab_home_gets_a_short_root_only_socket_path(tmp_path: Path) -> None:
    """AF_UNIX paths stop at 108 bytes: a deep lab home's socket goes to a short 0700 directory."""
    shallow = LabHome.resolve(tmp_path / "h")
    deep = LabHome.resolve(tmp_path / ("d" * 60) / ("e" * 60) / "home")
    in_home = instructor_lab.socket_dir(shallow) / "jupyter.sock"
    if len(os.fsencode(in_home)) <= 100:  # pytest's own temp path may already be deep
        assert instructor_lab.socket_path(shallow) == in_home
    sock = instructor_lab.socket_path(deep)
    assert len(os.fsencode(sock)) <= 100
    assert sock.parent.stat().st_mode & 0o777 == 0o700
    assert instructor_lab.socket_path(deep) == sock  # the same lab home, the same place
    shutil.rmtree(sock.parent)
