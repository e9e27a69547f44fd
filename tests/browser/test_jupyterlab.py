"""JupyterLab in a real Chromium, as a learner uses it (local route): run notebook 03 and see its dashboard,
answer a lab task wrong then right with the check buttons, reset a lab copy.

JupyterLab runs as ``./run-demo.sh --local`` starts it (``helpers.jupyter.start``: token auth, loopback, the
learner's workspace of copies); the provider server runs on a free loopback port of the test's lab home.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import main
from helpers.notebook import REPO_ROOT
from tests.browser.jupyterlab_ui import menu as _menu
from tests.browser.jupyterlab_ui import open_notebook as _open
from tests.browser.jupyterlab_ui import run_all_and_check_dashboard
from tests.browser.jupyterlab_ui import wait_ran as _wait_ran
from tests.support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NB03 = "notebooks/03_recipient_open_client.ipynb"
LAB1 = "labs/lab1_provider.ipynb"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _images(page: Any) -> int:
    return (
        page.locator(".jp-mod-current .jp-OutputArea-output img").count()
        or page.locator(".jp-Notebook .jp-OutputArea-output img").count()
    )


def _airline_ready(home: Path, server_factory: Any) -> None:
    """What notebooks 01 and 02 leave behind: the airline data, its shares and the sales team's profile."""
    from helpers.labs import setup

    port = free_port()
    server_factory(home, port=port)
    setup.ensure_dataset("airline", home)
    setup.ensure_airline_topology(home)
    setup.issue_profile("sales_team", home)


def test_notebook_03_dashboard_appears(
    lab_home: Path, server_factory: Any, monkeypatch: pytest.MonkeyPatch, learner_lab, browser_page
) -> None:
    _airline_ready(lab_home, server_factory)
    copy = learner_lab["work"] / NB03
    assert copy.is_file() and _digest(copy) == _digest(REPO_ROOT / NB03)  # a copy made on start
    page = browser_page
    _open(page, learner_lab, NB03)
    run_all_and_check_dashboard(page)
    assert _digest(REPO_ROOT / NB03) == _digest(REPO_ROOT / NB03)


def _set_cell(page: Any, index: int, text: str) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)


def test_lab1_check_buttons_and_reset(lab_home: Path, learner_lab, browser_page) -> None:
    tracked_before = _digest(REPO_ROOT / LAB1)
    page = browser_page
    _open(page, learner_lab, LAB1)
    cells = page.locator(".jp-Notebook .jp-Cell")
    import nbformat

    shipped = nbformat.read(REPO_ROOT / LAB1, as_version=4)
    p1 = next(i for i, c in enumerate(shipped.cells) if "answer_p1 = (" in c.source)
    cells.nth(p1).scroll_into_view_if_needed()
    cells.nth(p1).click()
    _menu(page, "Run", "Run All Above Selected Cell")
    prepare = next(i for i, c in enumerate(shipped.cells) if "prepare(home)" in c.source)
    _wait_ran(page, prepare)
    from helpers.provider import Provider

    row = Provider(lab_home).sql(
        "SELECT count(*) AS n, count(DISTINCT category) AS c FROM retail.sales.products"
    )
    right = (int(row["n"].item()), int(row["c"].item()))

    # wrong, with the Check button
    _set_cell(page, p1, "answer_p1 = (1, 1)\nlab.p1.widget(lambda: answer_p1)")
    page.keyboard.press("Shift+Enter")
    _wait_ran(page, p1)
    out = cells.nth(p1).locator(".jp-Cell-outputArea")
    out.get_by_role("button", name="Check").click()
    out.get_by_text("p1: failed").first.wait_for()
    # right, with the same button after re-running the cell
    _set_cell(page, p1, f"answer_p1 = {right}\nlab.p1.widget(lambda: answer_p1)")
    page.keyboard.press("Shift+Enter")
    _wait_ran(page, p1)
    out.get_by_role("button", name="Check").click()
    out.get_by_text("p1: passed").first.wait_for()
    assert "failed" not in out.inner_text()

    # The learner's copy holds the work (saved), the tracked exercise is untouched; reset restores the copy.
    page.keyboard.press("Control+S")
    copy = learner_lab["work"] / LAB1
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
    assert "lab.p1.widget" in copy.read_text(encoding="utf-8")
    assert _digest(REPO_ROOT / LAB1) == tracked_before
    assert main(["jupyter", "reset", "lab1"]) == 0
    assert _digest(copy) == tracked_before
    assert not (learner_lab["work"] / "labs" / "solutions").exists()
