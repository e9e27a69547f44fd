"""``sharelab jupyter start|stop|status``: JupyterLab on loopback with a random token."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
import requests

from helpers import jupyter
from helpers.cli import main
from helpers.exceptions import ServerError
from tests.support import free_port


def test_start_status_stop(lab_home: Path, tmp_path: Path, capsys) -> None:
    port = free_port()
    try:
        assert (
            main(
                [
                    "--home",
                    str(lab_home),
                    "jupyter",
                    "start",
                    "--port",
                    str(port),
                    "--notebook-dir",
                    str(tmp_path),
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        state = jupyter.status(lab_home)
        assert state and state["port"] == port and state["host"] == "127.0.0.1"
        assert f"http://127.0.0.1:{port}/lab?token={state['token']}" in out
        assert len(state["token"]) >= 32
        state_file = lab_home / "jupyter" / "jupyter.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/api/status", timeout=5).status_code == 403  # token required
        ok = requests.get(f"{base}/api/status", params={"token": state["token"]}, timeout=5)
        assert ok.status_code == 200
        # The kernels JupyterLab starts see this lab home.
        assert jupyter.start(lab_home)["pid"] == state["pid"]  # idempotent
        assert main(["--home", str(lab_home), "jupyter", "status"]) == 0
    finally:
        stopped = jupyter.stop(lab_home)
    assert stopped and jupyter.status(lab_home) is None
    assert main(["--home", str(lab_home), "jupyter", "status"]) == 1
    assert not jupyter.stop(lab_home)


def test_port_in_use(lab_home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError, match="in use"):
            jupyter.start(lab_home, port=port)
    assert jupyter.status(lab_home) is None
