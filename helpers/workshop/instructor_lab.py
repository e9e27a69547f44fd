"""The instructor's JupyterLab in the hub route, where no attendee process can reach it.

Attendees are OS users of the instructor's machine, so a JupyterLab on a ``127.0.0.1`` port is reachable by
their kernels and terminals (only its token stands in the way). Here it listens on **no TCP port at all**:
JupyterLab's ``ServerApp.sock``, a unix socket (0600) in ``<lab home>/hub/instructor-lab/`` (0700, root's),
so only root can connect; ``connect()`` from any other user fails with EACCES before a byte is sent.

The instructor reaches it from their own laptop through SSH, which forwards a local port to the socket::

    ssh -N -L 8888:<socket> root@<this machine>     # then open http://127.0.0.1:8888/lab?token=...

(:func:`start` prints that line). Its kernels get the lab home and trust the lab's CA, like
``sharelab jupyter start``'s.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from helpers.exceptions import ServerError
from helpers.home import LabHome
from helpers.procs import live_state, terminate

__all__ = ["get", "socket_dir", "socket_path", "start", "status", "stop"]

REPO = Path(__file__).resolve().parents[2]


def socket_dir(home: LabHome) -> Path:
    """``<lab home>/hub/instructor-lab``, root-only (0700)."""
    d = home.path / "hub" / "instructor-lab"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    d.parent.chmod(0o700)
    d.chmod(0o700)
    return d


_SUN_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes on Linux


def socket_path(home: LabHome) -> Path:
    """The socket: in :func:`socket_dir`, or (a lab home too deep for an AF_UNIX path) in a short root-only
    directory of the temp dir named after the lab home."""
    sock = socket_dir(home) / "jupyter.sock"
    if len(os.fsencode(sock)) <= _SUN_PATH_MAX:
        return sock
    digest = hashlib.sha256(os.fsencode(home.path.resolve())).hexdigest()[:12]
    d = Path(tempfile.gettempdir()) / f"sharelab-ilab-{digest}"
    d.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ServerError(f"{d} is not a directory of this user's: remove it and start again")
    d.chmod(0o700)
    return d / "jupyter.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def get(sock: Path, path: str, token: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """``GET path`` on the JupyterLab behind ``sock``; (status, body)."""
    conn = _UnixConnection(sock, timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"token {token}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _state_file(home: LabHome) -> Path:
    return socket_dir(home) / "state.json"


def status(home: LabHome) -> dict[str, Any] | None:
    """The running instructor JupyterLab's state, or None."""
    return live_state(_state_file(home))


def start(
    home: LabHome, *, notebook_dir: Path | None = None, timeout: float = 90.0
) -> dict[str, Any]:
    """Start the instructor's JupyterLab on the unix socket (idempotent); its state."""
    running = status(home)
    if running:
        return running
    d = socket_dir(home)
    sock = socket_path(home)
    sock.unlink(missing_ok=True)
    root = notebook_dir or (REPO / "work" if (REPO / "work").is_dir() else REPO)
    token = secrets.token_urlsafe(32)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.sock={sock}",
        "--ServerApp.sock_mode=0600", f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={d / 'workspaces'}", "--ServerApp.allow_root=True",
    ]  # fmt: skip
    env = dict(os.environ, JUPYTER_TOKEN=token, SHARELAB_HOME=str(home.path))
    env.pop("MPLBACKEND", None)
    lab_ca = home.path / "tls" / "ca.pem"
    if lab_ca.is_file():
        from helpers.recipient.trust import trust_env

        env.update(trust_env(lab_ca))
    log = d / "jupyter.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=root, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(sock, "/api/status", token)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace").splitlines()[-10:]
            terminate(proc.pid, 5.0, group=True)  # leave nothing running behind a failed start
            raise ServerError("the instructor's JupyterLab did not start:\n" + "\n".join(tail))
        time.sleep(0.5)
    state = {"pid": proc.pid, "socket": str(sock), "token": token, "log": str(log)}
    fd = os.open(_state_file(home), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    return state


def stop(home: LabHome, grace: float = 10.0) -> bool:
    """Stop it (with its kernels); False when none ran."""
    state = status(home)
    if state is None:
        return False
    terminate(int(state["pid"]), grace, group=True)
    _state_file(home).unlink(missing_ok=True)
    return True
