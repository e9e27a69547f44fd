"""Kernels the lab starts itself listen on unix sockets (helpers.kernels), where they fit."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from helpers.kernels import KERNEL_MANAGER, ipc_fits

SHOW = (
    "import json, ipykernel.connect as c\n"
    "info = json.loads(c.get_connection_info())\n"
    "print(info['transport'], info['ip'])"
)


def test_a_papermill_kernel_of_the_lab_is_on_unix_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import papermill as pm

    runtime = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: a socket path has 107 bytes
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    nb = tmp_path / "show.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SHOW)]), nb)
    out = pm.execute_notebook(
        str(nb),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        progress_bar=False,
        kernel_manager_class=KERNEL_MANAGER,
    )
    shutil.rmtree(runtime)
    transport, where = out.cells[0].outputs[0]["text"].split()
    assert transport == "ipc" and where.startswith(str(runtime))  # in the 0700 runtime directory


def test_a_runtime_directory_too_deep_for_a_socket_keeps_tcp() -> None:
    assert not ipc_fits("/" + "d" * 57) and ipc_fits("/" + "d" * 56)
    assert ipc_fits("/root/.local/share/jupyter/runtime")
