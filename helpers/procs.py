"""Processes: is a pid alive, a free loopback port, start a background process and wait until it is ready."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from helpers.exceptions import ServerError

__all__ = ["free_port", "live_state", "pid_alive", "spawn_and_wait", "terminate"]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except ImportError:  # pragma: no cover - psutil is a dependency, this is belt and braces
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    except Exception:  # psutil.NoSuchProcess, AccessDenied...
        return False


def live_state(path: Path) -> dict[str, Any] | None:
    """The JSON state file of a background process (with its ``pid``), or None when it is missing,
    unreadable or its process is gone."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not pid_alive(int(state.get("pid", 0))):
        return None
    return state


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def spawn_and_wait(
    argv: Sequence[str],
    *,
    ready: Callable[[], bool],
    timeout: float,
    log: Path | None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (output appended to ``log``) and poll ``ready()`` until it is true.

    :raises ServerError: when the process exits first, or ``ready()`` stays false for ``timeout`` seconds
        (the process is then terminated); the message quotes the end of the log.
    """
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        if not isinstance(out, int):
            out.close()  # the child has its own copy of the descriptor
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise ServerError(f"{argv[0]} exited with code {code} during start-up:\n{_tail(log)}")
        try:
            if ready():
                return proc
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    raise ServerError(f"{argv[0]} was not ready within {timeout:.0f} s; see {log}:\n{_tail(log)}")


def terminate(pid: int, grace: float = 10.0, *, group: bool = False) -> None:
    """SIGTERM ``pid`` (its process group with ``group``), SIGKILL it if still alive after ``grace`` s."""
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGKILL)
