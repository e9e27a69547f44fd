"""``sharelab jupyter start|stop|status``: JupyterLab in the background, bound to loopback, with a token.

State lives in ``<lab home>/jupyter/``: ``jupyter.json`` (pid, url, port, token; mode 0600 because it holds
the token) and ``jupyter.log``. The token is random (``secrets.token_urlsafe``) and passed through the
environment (``JUPYTER_TOKEN``), never on the command line where ``ps`` would show it. Kernels inherit
``SHARELAB_HOME`` so the notebooks find this lab home.

JupyterLab opens on the learner's workspace (:mod:`helpers.workspace`: copies of ``notebooks/`` and of the
lab exercises, made on the first start), so autosave never edits a tracked file; ``sharelab jupyter reset
NAME`` puts one copy back as shipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from helpers.exceptions import ServerError
from helpers.home import LabHome
from helpers.procs import free_port, live_state, pid_alive
from helpers.workspace import prepare as prepare_workspace
from helpers.workspace import reset as reset_copy

DEFAULT_PORT = 8888


def _state_file(lab: LabHome) -> Path:
    return lab.jupyter_dir / "jupyter.json"


def status(home: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The running JupyterLab of this lab home (its state dict), or None."""
    return live_state(_state_file(LabHome.resolve(home)))


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _pick_port(host: str, port: int | None) -> int:
    if port:
        if not _port_free(host, port):
            raise ServerError(
                f"port {port} on {host} is in use: stop what uses it, or choose another port"
                " (JUPYTER_PORT=8890 ./run-demo.sh, or sharelab jupyter start --port 8890)"
            )
        return port
    for candidate in range(DEFAULT_PORT, DEFAULT_PORT + 20):
        if _port_free(host, candidate):
            return candidate
    return free_port(host)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(
    home: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    notebook_dir: str | os.PathLike[str] | None = None,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Start JupyterLab in the background (idempotent: returns the running one's state).

    :param host: interface to bind (loopback by default; ``0.0.0.0`` for a workshop on a LAN).
    :param port: port (default: the first free one from 8888).
    :param notebook_dir: JupyterLab's root directory (default: the learner's workspace, see
        :mod:`helpers.workspace`; its copies are made when missing).
    :raises ServerError: when the port is taken or JupyterLab does not come up; the log's tail is included.
    """
    lab = LabHome.resolve(home)
    running = status(lab.path)
    if running:
        return running
    lab.jupyter_dir.mkdir(parents=True, exist_ok=True)
    port = _pick_port(host, port)
    token = secrets.token_urlsafe(32)
    root = Path(notebook_dir).resolve() if notebook_dir else prepare_workspace()
    if not root.is_dir():
        raise ServerError(f"notebook directory {root} does not exist; pass --notebook-dir DIR")
    log_path = lab.jupyter_dir / "jupyter.log"
    proc = _launch(lab, host, port, token, root, log_path)
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{local}:{port}"
    _wait_ready(proc, base, token, log_path, timeout)
    state = {
        "pid": proc.pid,
        "host": host,
        "port": port,
        "token": token,
        "notebook_dir": str(root),
        "url": f"{base}/lab?token={token}",
        "log": str(log_path),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    state_file = _state_file(lab)
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2)
    os.chmod(state_file, 0o600)
    return state


def _launch(
    lab: LabHome, host: str, port: int, token: str, root: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start JupyterLab in its own session (so :func:`_terminate` stops it with its kernels)."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        # JupyterLab's layout (open tabs) per lab home, not shared by every lab of this OS user
        f"--LabApp.workspaces_dir={lab.jupyter_dir / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # e.g. inside the Docker image
        cmd.append("--ServerApp.allow_root=True")
    env = dict(os.environ, JUPYTER_TOKEN=token, SHARELAB_HOME=str(lab.path))
    if env.get("MPLBACKEND", "").lower() == "agg":  # would hide every plot: kernels pick inline
        del env["MPLBACKEND"]
    lab_ca = lab.path / "tls" / "ca.pem"
    if lab_ca.is_file():  # the provider serves TLS (workshop mode): kernels trust its lab CA
        from helpers.recipient.trust import trust_env

        env.update(trust_env(lab_ca))
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=root,
            start_new_session=True,
        )


def _wait_ready(
    proc: subprocess.Popen[bytes], base: str, token: str, log_path: Path, timeout: float
) -> None:
    """Poll ``/api/status`` until JupyterLab answers; stop it and raise when it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerError(
                f"JupyterLab exited with status {proc.returncode}; log {log_path}:\n"
                f"{_log_tail(log_path)}"
            )
        try:
            if (
                requests.get(
                    f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=2
                ).status_code
                == 200
            ):
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            _terminate(proc.pid)
            raise ServerError(
                f"JupyterLab did not answer within {timeout:.0f} s; log {log_path}:\n"
                f"{_log_tail(log_path)}"
            )
        time.sleep(0.3)


def _terminate(pid: int, grace: float = 10.0) -> None:
    """Stop the process group we started (JupyterLab and its kernels)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid != pid:  # not the session we started: signal the process only
        killer, target = os.kill, pid
    else:
        killer, target = os.killpg, pgid
    try:
        killer(target, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.2)
    else:
        try:
            killer(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:  # reap it when it is our child (tests start and stop in one process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(home: str | os.PathLike[str] | None = None) -> bool:
    """Stop this lab home's JupyterLab; False when none was running."""
    lab = LabHome.resolve(home)
    state = status(lab.path)
    _state_file(lab).unlink(missing_ok=True)
    if not state:
        return False
    pid = int(state["pid"])
    try:
        import psutil

        cmdline = " ".join(psutil.Process(pid).cmdline())
        if "jupyter" not in cmdline:  # the pid was recycled: not ours to kill
            return False
    except Exception:
        pass
    _terminate(pid)
    return True


def _cmd_start(args: argparse.Namespace) -> int:
    state = start(args.home, host=args.host, port=args.port, notebook_dir=args.notebook_dir)
    print(f"JupyterLab is running (pid {state['pid']}): {state['url']}")
    if state.get("host") in ("0.0.0.0", "::"):
        print(
            "It listens on every interface: attendees use http://<this machine's address>:"
            f"{state['port']}/lab?token=<token>"
        )
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    print("JupyterLab stopped" if stop(args.home) else "JupyterLab was not running")
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    path = reset_copy(args.name, args.work)
    print(f"restored {path} as shipped (reload it in JupyterLab: File > Reload Notebook from Disk)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = status(args.home)
    if not state:
        print("JupyterLab: not running")
        return 1
    print(f"JupyterLab: running (pid {state['pid']}) at {state['url']}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``sharelab jupyter start|stop|status``."""
    p = subparsers.add_parser(
        "jupyter",
        help="run JupyterLab in the background (127.0.0.1, token auth)",
        description="Manage the lab's JupyterLab (one per lab home).",
    )
    sub = p.add_subparsers(dest="jupyter_command", metavar="ACTION")
    s = sub.add_parser("start", help="start JupyterLab and print its URL with the token")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, help=f"port (default: first free from {DEFAULT_PORT})")
    s.add_argument(
        "--notebook-dir", metavar="DIR", help="root directory (default: the learner's workspace)"
    )
    s.set_defaults(func=_cmd_start)
    sub.add_parser("stop", help="stop JupyterLab").set_defaults(func=_cmd_stop)
    r = sub.add_parser(
        "reset", help="restore one of the learner's copies as shipped (e.g. lab1, 03)"
    )
    r.add_argument("name", help="a notebook or lab: lab1, 03, labs/lab1_provider.ipynb...")
    r.add_argument(
        "--work", metavar="DIR", help="the workspace (default: $SHARELAB_WORK or ./work)"
    )
    r.set_defaults(func=_cmd_reset)
    sub.add_parser("status", help="show whether JupyterLab runs and its URL").set_defaults(
        func=_cmd_status
    )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
