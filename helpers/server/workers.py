"""Several server processes on one port: ``sharelab serve|start --workers N``.

The server process binds the port, builds the app (catalog opened and migrated, signing key loaded or
made once) and then forks N workers that all accept on the one listening socket (the kernel spreads the
connections); it stays as their supervisor: it holds the lab home's lock and ``server.json`` (its pid is
the server's pid, so ``sharelab stop``/``status`` are unchanged), forwards SIGTERM/SIGINT to the workers,
waits for them, and starts a worker again when one dies while the server runs. A worker dies with its
supervisor (``PR_SET_PDEATHSIG`` on Linux).

What the workers share is outside the process: the catalog (tokens, grants, revocations, the audit table,
one-time activation codes), the signing key file, and the failure-throttling buckets (in the catalog
too, see :mod:`helpers.server.cluster`). Background threads (audit writer, warm-up) are started
per worker by the app's lifespan, after the fork.

The default number of workers is :func:`default_workers`: ``$SHARELAB_WORKERS`` when set, else
``min(2, CPU cores)``; ``--workers 1`` is the single process of before (no fork at all).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType

from helpers.exceptions import InvalidArgumentError

__all__ = ["MAX_WORKERS", "WORKERS_ENV", "default_workers", "supervise", "worker_count"]

log = logging.getLogger("sharelab.server")

#: Environment variable giving the default number of workers.
WORKERS_ENV = "SHARELAB_WORKERS"
#: Set in each worker: its slot number (0..N-1).
WORKER_SLOT_ENV = "SHARELAB_WORKER_SLOT"
#: The most workers one server starts.
MAX_WORKERS = 64
_STOP_SECONDS = 15.0


def default_workers() -> int:
    """``$SHARELAB_WORKERS`` when set, else ``min(2, CPU cores)``."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        return worker_count(raw)
    return max(1, min(2, os.cpu_count() or 1))


def worker_count(value: object) -> int:
    """``value`` as a number of workers (1..:data:`MAX_WORKERS`). :raises InvalidArgumentError:"""
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_WORKERS:
        raise InvalidArgumentError(
            f"--workers / ${WORKERS_ENV} must be a whole number from 1 to {MAX_WORKERS}, got {value!r}"
        )
    return n


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no orphan keeps serving the port)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _spawn(slot: int, serve_one: Callable[[], None]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _die_with_parent()
        os.environ[WORKER_SLOT_ENV] = str(slot)
        serve_one()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - a worker's crash is logged, the supervisor restarts it
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def supervise(n: int, serve_one: Callable[[], None]) -> None:
    """Fork ``n`` workers running ``serve_one()`` and supervise them until SIGTERM/SIGINT (see module)."""
    children: dict[int, int] = {}
    for slot in range(n):
        children[_spawn(slot, serve_one)] = slot
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    old_term = signal.signal(signal.SIGTERM, stop)
    old_int = signal.signal(signal.SIGINT, stop)
    print(f"sharelab server: {n} workers (pids {', '.join(map(str, children))})", flush=True)
    restarts: list[float] = []
    deadline: float | None = None
    try:
        while children:
            if stopping and deadline is None:
                deadline = time.monotonic() + _STOP_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                for pid in list(children):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            if pid not in children:
                continue
            slot = children.pop(pid)
            if stopping:
                continue
            log.warning(
                "worker %s (pid %s) exited with status %s; starting it again", slot, pid, status
            )
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 10] + [now]
            time.sleep(
                min(2.0, 0.1 * len(restarts))
            )  # a worker that keeps dying is not a busy loop
            children[_spawn(slot, serve_one)] = slot
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
