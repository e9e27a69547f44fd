"""Shared fixtures: every test gets its own lab home and free loopback ports, and cleans up what it starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh lab home, also exported as SHARELAB_HOME for code that reads the environment."""
    home = tmp_path / "lab-home"
    home.mkdir()
    monkeypatch.setenv("SHARELAB_HOME", str(home))
    return home


@dataclass
class RunningServer:
    home: Path
    host: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/delta-sharing/"

    def log(self) -> str:
        path = self.home / "server" / "server-test.log"
        return path.read_text() if path.exists() else ""


def start_server(
    home: Path, port: int | None = None, extra: list[str] | None = None, timeout: float = 60.0
) -> RunningServer:
    """Start ``sharelab serve`` as a subprocess on a free loopback port and wait for /health."""
    port = port or free_port()
    (home / "server").mkdir(parents=True, exist_ok=True)
    log = open(home / "server" / "server-test.log", "ab")  # noqa: SIM115 - closed with the process
    env = dict(os.environ, SHARELAB_HOME=str(home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helpers",
            "--home",
            str(home),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(extra or []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    server = RunningServer(home=home, host="127.0.0.1", port=port, process=proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server did not answer /health within {timeout}s:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def server_factory() -> Iterator:
    """Start servers on demand (``server_factory(home)``); all are stopped after the test."""
    started: list[RunningServer] = []

    def factory(home: Path, **kwargs) -> RunningServer:
        server = start_server(home, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)


SANITIZE = REPO / "tests" / "notebooks" / "sanitize.cfg"


def _run_nbval(
    notebooks: list[Path], home: Path, *, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Re-execute ``notebooks`` with ``pytest --nbval-lax`` in lab home ``home`` (server on a free port).

    Cells marked ``# NBVAL_CHECK_OUTPUT`` or tagged ``nbval-check-output`` must reproduce their committed
    outputs once ``sanitize.cfg`` has masked times, tokens, ports and paths. Stops the server after.
    """
    from helpers import server

    env = dict(os.environ, SHARELAB_HOME=str(home), SHARELAB_PORT=str(free_port()))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        "--nbval-cell-timeout",
        "600",
        "-o",
        "addopts=",
        "--rootdir",
        str(REPO),
        *map(str, notebooks),
    ]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        server.stop(home)


@pytest.fixture
def run_nbval():
    """:func:`_run_nbval`: nbval over committed notebooks in a given lab home."""
    return _run_nbval
