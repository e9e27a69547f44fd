"""Real-browser fixtures: Playwright (from PyPI) driving Debian's Chromium, JupyterLab started as a learner's is.

Never downloads a browser (no ``playwright install``): it launches ``/usr/bin/chromium`` (``./run-demo.sh
test`` installs it with apt-get when run as root) and skips, saying why, when it or Playwright is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import jupyter
from helpers.server.lifecycle import stop as stop_provider
from tests.browser.jupyterlab_ui import chromium_page
from tests.support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh Chromium profile (its own user-data-dir), closed after the test."""
    with chromium_page(tmp_path / "chromium-profile") as page:
        yield page


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
        # a notebook run in the page may have started the lab's server, detached from JupyterLab
        stop_provider(lab_home)
