"""The container route as a learner meets it (issue 12), in a real Chromium.

One pod, started by ``./run-demo.sh`` as a learner starts it when podman is there (``docker/lab.sh up``),
serves every test of this module: notebook 03 run from JupyterLab's menus shows its dashboard; ``./run-demo.sh
status`` shows the containers; ``./run-demo.sh reset lab1`` restores the learner's copy in the work volume.
The plot check of a batch run inside the image is in ``test_image.py`` (it reuses that test's batch run).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.jupyterlab_ui import chromium_page, open_notebook, run_all_and_check_dashboard
from tests.container.common import LAB_SH, RUN_DEMO, BuiltImage, podman, report, run
from tests.support import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1200)]

NB03 = "notebooks/03_recipient_open_client.ipynb"
LAB1 = "labs/lab1_provider.ipynb"

# What notebooks 01 and 02 leave behind: the airline data, its shares and the sales team's profile.
PREREQUISITES = (
    "from helpers.labs import setup\n"
    "setup.ensure_dataset('airline')\n"
    "setup.ensure_airline_topology()\n"
    "print(setup.issue_profile('sales_team'))\n"
)


@pytest.fixture(scope="module")
def learner_pod(image: BuiltImage) -> Iterator[dict[str, str]]:
    """``./run-demo.sh`` in the container route on free loopback ports; ``down --volumes`` afterwards."""
    name = f"sharelab-learner-{os.getpid()}"
    env = {
        "SHARELAB_NAME": name,
        "SHARELAB_IMAGE": image.name,
        "SHARELAB_PORT": str(free_port()),
        "JUPYTER_PORT": str(free_port()),
        "JUPYTER_TOKEN": secrets.token_hex(16),
        "SHARELAB_NO_REBUILD": "1",  # the session's image was just built from these sources
        "LAN": "0",
    }
    try:
        t0 = time.monotonic()
        up = run([str(RUN_DEMO)], env=env, timeout=600)
        report(f"./run-demo.sh (container route, image cached): {time.monotonic() - t0:.0f} s")
        assert f"http://127.0.0.1:{env['JUPYTER_PORT']}/lab?token=" in up.stdout, up.stdout
        yield {**env, "name": name}
    finally:
        run([str(LAB_SH), "down", "podman", "--volumes"], env=env, check=False, timeout=300)


def test_notebook_03_dashboard_in_the_container_lab(
    learner_pod: dict[str, str], tmp_path: Path
) -> None:
    """Notebook 03, run from JupyterLab's menus in the lab container, shows its dashboard's images."""
    name = learner_pod["name"]
    podman("exec", "-i", f"{name}-lab", "python", "-", stdin=PREREQUISITES, timeout=600)
    lab: dict[str, Any] = {
        "base": f"http://127.0.0.1:{learner_pod['JUPYTER_PORT']}",
        "token": learner_pod["JUPYTER_TOKEN"],
    }
    t0 = time.monotonic()
    with chromium_page(tmp_path / "chromium-profile") as page:
        open_notebook(page, lab, NB03)
        try:
            # a loaded machine runs a container's first kernel slowly: more time than the local route
            shown = run_all_and_check_dashboard(page, timeout=420_000)
        except AssertionError:
            page.screenshot(path=str(tmp_path / "notebook-03.png"), full_page=True)
            raise
    report(
        f"notebook 03 in the container's JupyterLab: {shown} image(s), {time.monotonic() - t0:.0f} s"
    )


def test_status_and_reset_in_the_container_route(learner_pod: dict[str, str]) -> None:
    """``./run-demo.sh status`` names the running containers; ``reset lab1`` restores the copy in the volume."""
    env, name = learner_pod, learner_pod["name"]
    status = run([str(RUN_DEMO), "status"], env=env, timeout=300).stdout
    for svc in ("provider", "lab"):
        assert f"{name}-{svc}" in status and "healthy" in status, status

    copy = f"/home/lab/work/{LAB1}"
    digest = ["sha256sum", copy, f"/opt/sharelab/{LAB1}"]
    podman("exec", f"{name}-lab", "sh", "-c", f"echo edited-by-the-learner >> {copy}")
    edited, shipped = (
        ln.split()[0] for ln in podman("exec", f"{name}-lab", *digest).stdout.splitlines()
    )
    assert edited != shipped
    done = run([str(RUN_DEMO), "reset", "lab1"], env=env, timeout=120)
    assert "lab1_provider.ipynb" in done.stdout + done.stderr, done.stdout + done.stderr
    restored, shipped = (
        ln.split()[0] for ln in podman("exec", f"{name}-lab", *digest).stdout.splitlines()
    )
    assert restored == shipped

    # A name that is no copy: a one-line error naming the fix, the copies unchanged.
    bad = run([str(RUN_DEMO), "reset", "no-such-notebook"], env=env, timeout=120, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr
