"""run-demo.ps1, the PowerShell twin of run-demo.sh: the same commands, dispatched the same way.

A static test (no PowerShell on the development machine; when ``pwsh`` is installed the script is also
parsed and its help printed): ``status`` shows the containers and the local processes; ``reset NAME``
restores a copy in the container's work volume when the container lab runs (``docker/lab.sh running`` /
``reset``), else locally with ``sharelab jupyter reset``; ``--lan`` serves the provider over TLS and keeps
JupyterLab on 127.0.0.1, like run-demo.sh.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.container.common import REPO

PS1 = (REPO / "run-demo.ps1").read_text(encoding="utf-8")
SH = (REPO / "run-demo.sh").read_text(encoding="utf-8")


def _branch(script: str, name: str) -> str:
    """The body of the ``'name' { ... }`` branch of the switch (up to the next branch at that indent)."""
    m = re.search(rf"^    '{re.escape(name)}' \{{\n(.*?)^    \}}\n", script, re.S | re.M)
    assert m, f"run-demo.ps1 has no '{name}' command"
    return m.group(1)


def test_ps1_offers_the_commands_of_run_demo_sh() -> None:
    sh_cmds = set(re.findall(r"^  (\w[\w-]*)\)", SH, re.M)) - {
        "workshop"
    }  # hub route: root, Linux only
    ps_cmds = set(re.findall(r"^    '(\w[\w-]*)' \{", PS1, re.M))
    assert {"status", "reset", "open", "batch", "test", "stop"} <= ps_cmds
    assert sh_cmds <= ps_cmds, f"in run-demo.sh but not run-demo.ps1: {sh_cmds - ps_cmds}"
    for cmd in ("status", "reset NAME"):
        assert re.search(rf"^  {cmd} ", PS1, re.M), f"the help text does not explain {cmd}"


def test_ps1_status_and_reset_dispatch_like_run_demo_sh() -> None:
    status = _branch(PS1, "status")
    assert "Invoke-LabSh -Engine $eng -Arguments @('status')" in status
    assert "-m helpers status" in status and "-m helpers jupyter status" in status
    reset = _branch(PS1, "reset")
    assert "$rest.Count -lt 1" in reset and "exit 2" in reset  # a name is required
    assert "@('running')" in reset and "@('reset') + $rest" in reset  # the container route first
    assert "-m helpers jupyter reset @rest" in reset  # else the local copy
    assert "& bash $labSh @Arguments $Engine" in PS1


def test_ps1_workshop_mode_is_tls_with_jupyterlab_on_loopback() -> None:
    start = PS1.index("function Open-Local")
    body = PS1[start : PS1.index("\n}\n", start)]
    assert "$startArgs += '--tls'" in body and "SHARELAB_TLS -eq '0'" in body
    assert "'jupyter', 'start', '--host', '127.0.0.1'" in body
    assert "0.0.0.0', '--notebook-dir'" not in body and "--notebook-dir" not in body


@pytest.mark.skipif(not shutil.which("pwsh"), reason="PowerShell (pwsh) is not installed here")
def test_ps1_parses_and_prints_its_help() -> None:
    done = subprocess.run(
        ["pwsh", "-NoProfile", "-File", str(REPO / "run-demo.ps1"), "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "reset NAME" in done.stdout
