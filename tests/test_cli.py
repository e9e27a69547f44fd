"""The ``sharelab`` entry point: every command is wired, has --help, and errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import sharelab

COMMANDS = [
    "sql",
    "profile",
    "token",
    "generate",
    "serve",
    "start",
    "stop",
    "status",
    "jupyter",
    "batch",
    "labs",
    "mesh",
]


def test_help_lists_every_command() -> None:
    result = sharelab(None, "--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = sharelab(None, command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = sharelab(None, "frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_errors_are_one_line_and_exit_1(lab_home: Path) -> None:
    result = sharelab(lab_home, "sql", "DROP SHARE no_such_share")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "no_such_share" in lines[0]


def test_console_script_matches_module() -> None:
    script = Path(sys.executable).parent / "sharelab"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("sharelab ")
