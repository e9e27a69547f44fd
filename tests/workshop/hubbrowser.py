"""A real Chromium (Debian's, driven by Playwright from PyPI) signing in to the hub over TLS.

Chromium is made to trust the hub's certificate without turning verification off:
``--ignore-certificate-errors-spki-list`` pins the SHA-256 of the server certificate's public key (and the
lab CA's), so a certificate with any other key is still refused. No ``playwright install``: it launches
``/usr/bin/chromium`` and the caller skips when it or Playwright is missing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.browser.jupyterlab_ui import CHROMIUM, FLAGS, STARTED, menu, wait_kernel_ready

__all__ = ["CHROMIUM", "chromium", "run_all", "sign_in", "spki_pin"]


def spki_pin(pem: Path) -> list[str]:
    """base64(SHA-256(SubjectPublicKeyInfo)) of every certificate in ``pem``."""
    pins = []
    for cert in x509.load_pem_x509_certificates(pem.read_bytes()):
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pins.append(base64.b64encode(hashlib.sha256(spki).digest()).decode())
    return pins


@contextmanager
def chromium(profile: Path, pins: list[str]) -> Iterator[Any]:
    """A page of a fresh Chromium profile that trusts exactly the pinned keys."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*FLAGS, f"--ignore-certificate-errors-spki-list={','.join(pins)}"],
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(90_000)
            yield page
        finally:
            context.close()


def sign_in(page: Any, url: str, name: str, code: str) -> None:
    """The hub's login form, as an attendee fills it in."""
    page.goto(f"{url}/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", code)
    page.click("input[type=submit], button[type=submit]")


def _wait_idle(page: Any, timeout: float = 300_000) -> None:
    page.wait_for_function(
        """() => {
            const el = document.querySelector('.jp-Notebook-ExecutionIndicator');
            const busy = [...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('[*]'));
            return el && el.getAttribute('data-status') === 'idle' && !busy;
        }""",
        timeout=timeout,
    )


def run_all(page: Any, server: str, rel: str) -> list[str]:
    """Open notebook ``rel`` of the single-user server at ``server`` (``https://hub/user/NAME``), wait until
    its kernel is idle and the page connected to it, clear its outputs, Run All Cells (again, after a reload,
    while no cell starts); the ``src`` of the images it shows."""
    # a run request sent while the page's kernel connection settles can be lost
    for _load in range(3):
        page.goto(f"{server}/lab/tree/{rel}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached", timeout=120_000)
        _wait_idle(page)
        wait_kernel_ready(page, server, rel)
        menu(page, "Edit", "Clear Outputs of All Cells")
        page.wait_for_function("() => !document.querySelector('.jp-OutputArea-output img')")
        menu(page, "Run", "Run All Cells")
        try:
            page.wait_for_function(STARTED, timeout=60_000)
            break
        except Exception:  # noqa: BLE001 - nothing started: load the page again and ask again
            continue
    else:
        prompts = page.locator(".jp-InputPrompt").all_inner_texts()
        raise AssertionError(f"Run All Cells started no cell in 3 page loads: prompts {prompts}")
    try:
        page.wait_for_selector(".jp-OutputArea-output img", state="attached", timeout=300_000)
    except Exception as exc:  # say what the page shows instead of the plots
        shown = page.locator(".jp-OutputArea-output").all_inner_texts()
        status = page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
        prompts = page.locator(".jp-InputPrompt").all_inner_texts()
        raise AssertionError(
            f"no plot: kernel {status}, prompts {prompts}, outputs {[t[:300] for t in shown]}"
        ) from exc
    _wait_idle(page)
    images = page.locator(".jp-OutputArea-output img")
    return [images.nth(i).get_attribute("src") or "" for i in range(images.count())]
