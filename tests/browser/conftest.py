"""Real-browser fixtures: Playwright (from PyPI) driving Debian's Chromium, JupyterLab started as a learner's is.

Never downloads a browser (no ``playwright install``): it launches ``/usr/bin/chromium`` (``./run-demo.sh
test`` installs it with apt-get when run as root) and skips, saying why, when it or Playwright is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import jupyter
from tests.support import free_port

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh Chromium profile (its own user-data-dir), closed after the test."""
    if not CHROMIUM.is_file():
        pytest.skip(
            "no /usr/bin/chromium: apt-get install -y chromium (./run-demo.sh test does it as root)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]' -c constraints.txt")
    profile = tmp_path / "chromium-profile"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def learner_lab(
    lab_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """JupyterLab as ``./run-demo.sh --local`` starts it: on the learner's workspace (copies made on start).

    Yields its state plus ``work`` (the workspace) and ``base`` (http://127.0.0.1:PORT).
    """
    work = tmp_path / "work"
    monkeypatch.setenv("SHARELAB_WORK", str(work))
    state = jupyter.start(lab_home, port=free_port())
    try:
        yield {**state, "work": work, "base": f"http://127.0.0.1:{state['port']}"}
    finally:
        jupyter.stop(lab_home)
