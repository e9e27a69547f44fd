"""Driving JupyterLab in a real Chromium, shared by the local-route and container-route browser tests.

:func:`chromium_page` launches Debian's ``/usr/bin/chromium`` through Playwright (never a downloaded browser)
and skips, saying why, when either is missing. The other functions act as a learner does: open a notebook,
use the menus, wait for the kernel; :func:`run_all_and_check_dashboard` is notebook 03's run-all check.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@contextlib.contextmanager
def chromium_page(profile: Path) -> Iterator[Any]:
    """A page of a fresh Chromium profile (user-data-dir ``profile``), closed and removed afterwards."""
    if not CHROMIUM.is_file():
        pytest.skip(
            "no /usr/bin/chromium: apt-get install -y chromium (./run-demo.sh test does it as root)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]' -c constraints.txt")
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


def open_notebook(page: Any, lab: dict[str, Any], rel: str) -> None:
    """Open notebook ``rel`` of the lab at ``lab['base']`` (with ``lab['token']``); wait until its kernel is idle."""
    page.goto(f"{lab['base']}/lab/tree/{rel}?token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached", timeout=90_000)
    wait_idle(page)
    wait_kernel_ready(page, lab["base"], rel, {"Authorization": f"token {lab['token']}"})


# as JupyterLab itself asks: a request made with cookies carries the _xsrf cookie back as a header
SESSIONS = """async ([url, headers]) => {
    const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1];
    if (xsrf) headers = {...headers, 'X-XSRFToken': decodeURIComponent(xsrf)};
    const r = await fetch(url, {headers});
    return [r.status, r.ok ? await r.json() : []];
}"""


def wait_kernel_ready(
    page: Any, base: str, rel: str, headers: dict[str, str] | None = None, timeout: float = 180.0
) -> None:
    """Wait until the notebook's kernel has started and the page is connected to it (the server's
    ``/api/sessions``, fetched by the page itself, so with its cookies and the certificate it trusts, plus
    ``headers``): a run request sent while a fresh kernel still starts can be lost."""
    deadline = time.monotonic() + timeout
    state: object = None
    while time.monotonic() < deadline:
        status, body = page.evaluate(SESSIONS, [f"{base}/api/sessions", headers or {}])
        sessions = (
            [s for s in body if str(s.get("path", "")).endswith(rel)] if status == 200 else []
        )
        kernel = sessions[0].get("kernel") or {} if sessions else {}
        state = (kernel.get("execution_state"), kernel.get("connections"), status)
        if state[0] == "idle" and (state[1] or 0) >= 1:
            wait_idle(page)
            return
        time.sleep(0.5)
    raise AssertionError(
        f"the kernel of {rel} did not become ready: (state, connections, HTTP status) = {state}"
    )


def wait_idle(page: Any, timeout: float = 180_000) -> None:
    page.wait_for_function(
        """() => {
            const el = document.querySelector('.jp-mod-current .jp-Notebook-ExecutionIndicator')
                || document.querySelector('.jp-Notebook-ExecutionIndicator');
            const busy = document.querySelectorAll('.jp-mod-current .jp-InputPrompt').length
                && [...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('[*]'));
            return el && el.getAttribute('data-status') === 'idle' && !busy;
        }""",
        timeout=timeout,
    )


def wait_ran(page: Any, index: int, timeout: float = 180_000) -> None:
    """Wait until cell ``index`` has run (its prompt shows an execution count, not ``[*]`` or ``[ ]``)."""
    page.wait_for_function(
        """(i) => {
            const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
            const prompt = cell && cell.querySelector('.jp-InputPrompt');
            return prompt && /\\[\\d+\\]/.test(prompt.textContent);
        }""",
        arg=index,
        timeout=timeout,
    )
    wait_idle(page, timeout)


STARTED = """() => [...document.querySelectorAll('.jp-InputPrompt')]
    .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""
"""Whether a cell has started (a prompt shows ``[*]`` or an execution count)."""


def menu(page: Any, name: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=name).first.click()
    page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).first.click()


def prompts(page: Any) -> str:
    """The cells' prompts (``[3]:``, ``[*]:``...) and the kernel's status, for failure messages."""
    return str(
        page.evaluate(
            """() => [...document.querySelectorAll('.jp-InputPrompt')].map(p => p.textContent.trim())
                .filter(Boolean).join(' ') + ' | kernel: ' +
                ((document.querySelector('.jp-Notebook-ExecutionIndicator') || {dataset: {}})
                    .getAttribute?.('data-status') || '?')"""
        )
    )


def run_all_and_check_dashboard(page: Any, timeout: float = 180_000) -> int:
    """Clear the open notebook's outputs, run all cells, and check that no cell failed and the dashboard
    (notebook 03's 2x2 figure) is drawn in the page. Returns the number of images shown."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("() => !document.querySelector('.jp-OutputArea-output img')")
    menu(page, "Run", "Run All Cells")
    try:
        page.wait_for_function(STARTED, timeout=60_000)
    except (
        Exception
    ):  # the request was lost (a kernel that was still starting): click again, as a learner would
        menu(page, "Run", "Run All Cells")
    try:
        page.wait_for_selector(".jp-OutputArea-output img", state="attached", timeout=timeout)
    except Exception as exc:
        raise AssertionError(
            f"no image after Run All Cells ({exc.__class__.__name__}); {prompts(page)}"
        ) from exc
    wait_idle(page, timeout)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks[:2]
    images = page.locator(".jp-OutputArea-output img")
    assert images.count() >= 1  # the 2x2 dashboard
    box = images.first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 200, box
    src = images.first.get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,") and len(src) > 20_000
    return int(images.count())
