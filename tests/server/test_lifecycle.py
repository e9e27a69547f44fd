"""``sharelab start|stop|status|serve``: one background server per lab home, driven through the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import free_port, sharelab, start_server, stop_server


@pytest.fixture
def managed_home(lab_home: Path) -> Iterator[Path]:
    """A lab home whose background server (if any) is stopped, by its pid, after the test."""
    yield lab_home
    state_file = lab_home / "server" / "server.json"
    if state_file.exists():
        sharelab(lab_home, "stop")
    try:
        pid = int(json.loads(state_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_start_status_stop(managed_home: Path) -> None:
    port = free_port()
    started = sharelab(managed_home, "start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout
    state = json.loads((managed_home / "server" / "server.json").read_text())
    assert state["port"] == port
    assert state["endpoint"] == f"http://127.0.0.1:{port}/delta-sharing/"
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["status"] == "ok"
    assert (managed_home / "server" / "server.log").exists()

    again = sharelab(managed_home, "start", "--port", str(port))
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert json.loads((managed_home / "server" / "server.json").read_text())["pid"] == state["pid"]

    status = sharelab(managed_home, "status", "--json")
    assert status.returncode == 0
    info = json.loads(status.stdout)
    assert info["pid"] == state["pid"] and info["healthy"] is True
    assert "running" in sharelab(managed_home, "status").stdout

    # A second server on the same home is refused with a clear message, even on another port.
    second = sharelab(managed_home, "serve", "--port", str(free_port()), timeout=60)
    assert second.returncode == 1
    assert "already running" in second.stderr and "sharelab stop" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1

    stopped = sharelab(managed_home, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not (managed_home / "server" / "server.json").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    assert "no server running" in sharelab(managed_home, "status").stdout
    assert json.loads(sharelab(managed_home, "status", "--json").stdout) is None
    again = sharelab(managed_home, "stop")
    assert again.returncode == 0 and "no server was running" in again.stdout


def test_port_in_use_is_a_clear_error(managed_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = sharelab(managed_home, "start", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "--port" in result.stderr
    assert not (managed_home / "server" / "server.json").exists()


def test_bad_public_url_is_a_usage_error(managed_home: Path) -> None:
    result = sharelab(managed_home, "serve", "--port", str(free_port()), "--public-url", "lab:8080")
    assert result.returncode == 1
    assert "http://" in result.stderr


def test_public_url_goes_into_profiles(lab_home: Path) -> None:
    from helpers.catalog import Catalog

    server = start_server(lab_home, extra=["--public-url", "http://classroom.example:9999"])
    try:
        state = json.loads((lab_home / "server" / "server.json").read_text())
        assert state["endpoint"] == "http://classroom.example:9999/delta-sharing/"
        catalog = Catalog(lab_home / "catalog.db")
        catalog.create_recipient("learner")
        code = catalog.create_activation("learner")
        profile = requests.get(f"{server.url}/delta-sharing/activation/{code}", timeout=10).json()
        assert profile["endpoint"] == "http://classroom.example:9999/delta-sharing/"
        # Signed file URLs use the public URL too (checked on an empty listing's shape only).
        assert (
            requests.get(
                f"{server.url}/delta-sharing/shares",
                headers={"Authorization": f"Bearer {profile['bearerToken']}"},
                timeout=10,
            ).status_code
            == 200
        )
    finally:
        stop_server(server)


def test_serve_cleans_up_its_state_on_sigterm(lab_home: Path) -> None:
    """``docker stop`` / ``kill`` send SIGTERM to a foreground ``sharelab serve``: no stale state is left.

    A stale ``server.json`` whose pid is later reused (likely in a container's pid namespace) would make
    ``sharelab start`` report a dead server as already running.
    """
    server = start_server(lab_home)
    state_file = lab_home / "server" / "server.json"
    assert state_file.exists()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    finally:
        stop_server(server)
    assert not state_file.exists(), "server.json left behind after SIGTERM"
    assert not (lab_home / "server" / "server.pid").exists()


def test_start_is_not_fooled_by_a_stale_state_file(managed_home: Path) -> None:
    """A leftover ``server.json`` whose pid now belongs to another process must not block ``start``."""
    stale_port = free_port()
    server_dir = managed_home / "server"
    server_dir.mkdir(parents=True, exist_ok=True)
    (server_dir / "server.json").write_text(
        json.dumps(
            {
                "pid": os.getpid(),  # alive, but not a sharing server
                "host": "127.0.0.1",
                "port": stale_port,
                "public_url": None,
                "endpoint": f"http://127.0.0.1:{stale_port}/delta-sharing/",
                "started_at": "2026-01-01T00:00:00Z",
            }
        )
    )
    port = free_port()
    try:
        result = sharelab(managed_home, "start", "--port", str(port))
        assert result.returncode == 0, result.stderr
        state = json.loads((server_dir / "server.json").read_text())
        assert state["pid"] != os.getpid()
        assert (
            requests.get(f"http://127.0.0.1:{state['port']}/health", timeout=5).status_code == 200
        )
    finally:
        # never let the cleanup fixture signal the test process itself
        state_file = server_dir / "server.json"
        if state_file.exists() and json.loads(state_file.read_text()).get("pid") == os.getpid():
            state_file.unlink()


def test_stop_never_signals_an_unrelated_process(lab_home: Path) -> None:
    """``sharelab stop`` with a stale ``server.json`` whose pid was reused must not kill that process."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        server_dir = lab_home / "server"
        server_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        (server_dir / "server.json").write_text(
            json.dumps(
                {
                    "pid": bystander.pid,
                    "host": "127.0.0.1",
                    "port": port,
                    "public_url": None,
                    "endpoint": f"http://127.0.0.1:{port}/delta-sharing/",
                    "started_at": "2026-01-01T00:00:00Z",
                }
            )
        )
        result = sharelab(lab_home, "stop")
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None, "sharelab stop killed a process that is not its server"
    finally:
        bystander.kill()
        bystander.wait()
