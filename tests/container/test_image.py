"""The Docker image, built and run with no container registry (issue 7).

The session fixture makes the base image with debootstrap from the Debian mirror
(``docker/make-base-image.sh``, cached as ``localhost/sharelab-base:bookworm``), builds the lab image from
it with ``docker/lab.sh build podman``, and the tests use it the way a learner or CI does:

- ``docker/lab.sh up``: a pod with the provider and JupyterLab; the official client in the lab container
  reads a share from the provider container over the pod network, with the same results as a local run;
- ``sharelab batch`` in a container without network, with the same key figures as a local batch run;
- a smoke check: non-root user, pinned versions, a healthcheck that passes on a service and fails without.

Needs root (debootstrap, rootful podman); podman, debootstrap and runc are installed with apt-get when
missing. ``SHARELAB_SKIP_CONTAINER=1`` skips the module. The build time and image size are printed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests
import yaml

from helpers.notebook import cells_missing_plots
from tests.container.common import (
    DOCKER,
    LAB_SH,
    LAB_UID,
    REPO,
    BuiltImage,
    last_json,
    podman,
    report,
    run,
)
from tests.support import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

# Provider side: generate the airline dataset, share every table with one recipient, write its
# profile for the running server's endpoint. Run as is in the provider container and locally.
PROVIDER_SETUP = r"""
import json
from helpers.profiles import profile_dict, write_profile
from helpers.datagen import generate
from helpers.catalog import open_catalog
from helpers.home import LabHome

lab = LabHome.resolve()
summary = generate("airline", scale="small", seed=42, progress=False)
cat = open_catalog(lab)
cat.create_share("container_check")
for t in summary.tables:
    cat.add_table_to_share("container_check", f"airline.{t.schema}.{t.table}")
cat.create_recipient("container_reader")
cat.grant("container_check", "container_reader")
state = lab.server_state()
assert state, "no provider server runs on this lab home"
issued = cat.issue_token("container_reader")
path = write_profile(lab.profiles_dir / "container_reader.share", profile_dict(state["endpoint"], issued))
print(json.dumps({"profile": str(path), "rows": {f"{t.schema}.{t.table}": t.rows for t in summary.tables}}))
"""

# Recipient side: the official client only, with the profile file (argv[1]). Order-independent
# content hash per table, so that two runs compare cell by cell without sorting.
RECIPIENT_READ = r"""
import json
import sys

import delta_sharing
import pandas as pd

profile = sys.argv[1]
client = delta_sharing.SharingClient(profile)
tables = {}
for t in client.list_all_tables():
    df = delta_sharing.load_as_pandas(f"{profile}#{t.share}.{t.schema}.{t.name}")
    digest = int(pd.util.hash_pandas_object(df, index=False).sum())
    tables[f"{t.schema}.{t.name}"] = {"rows": len(df), "columns": list(df.columns), "hash": digest}
with open(profile) as f:
    endpoint = json.load(f)["endpoint"]
print(json.dumps({"endpoint": endpoint, "tables": tables}))
"""

# Key figures that depend on when or where a run happened (times, ports, paths, the interpreter's
# patch release), never compared.
VOLATILE = re.compile(r"(second|time|duration|port|url|token|path|started|elapsed|^python$)", re.I)


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_image_smoke_user_pins_and_healthcheck(image: BuiltImage) -> None:
    """Non-root user, every installed package at its constraints.txt pin, a healthcheck that can fail."""
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image.name).stdout.strip()
    assert user == "lab"
    check = json.loads(
        podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image.name).stdout
    )
    assert check and check["Test"] == ["CMD", "sharelab-entrypoint", "health"], check
    ident = podman("run", "--rm", "--network", "none", image.name, "id", "-u").stdout.strip()
    assert ident == str(LAB_UID), "the container must not run as root"
    version = podman(
        "run",
        "--rm",
        "--network",
        "none",
        image.name,
        "python",
        "-c",
        "import sys; print(sys.version_info[:2])",
    ).stdout.strip()
    assert version == "(3, 11)"

    freeze = podman(
        "run", "--rm", "--network", "none", image.name, "pip", "freeze", "--exclude-editable"
    ).stdout
    pins = _constraints()
    installed = {}
    for line in freeze.splitlines():
        if "==" in line:
            name, ver = line.split("==", 1)
            installed[re.sub(r"[-_.]+", "-", name).lower()] = ver
    unpinned = {n: v for n, v in installed.items() if n not in pins}
    wrong = {n: (v, pins[n]) for n, v in installed.items() if n in pins and pins[n] != v}
    assert not unpinned, f"installed in the image but not pinned in constraints.txt: {unpinned}"
    assert not wrong, f"image version != constraints.txt pin: {wrong}"
    for key in (
        "delta-sharing",
        "deltalake",
        "pandas",
        "pyarrow",
        "jupyterlab",
        "papermill",
        "duckdb",
    ):
        assert installed.get(key) == pins[key], key

    # The healthcheck fails when the container runs no lab service.
    name = f"sharelab-test-idle-{os.getpid()}"
    try:
        podman("run", "-d", "--name", name, "--network", "none", image.name, "sleep", "300")
        hc = podman("healthcheck", "run", name, check=False)
        assert hc.returncode != 0, hc.stdout + hc.stderr
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture
def lab_pod(image: BuiltImage) -> Iterator[dict[str, str]]:
    """``docker/lab.sh up podman`` on free loopback ports; ``down --volumes`` afterwards."""
    name = f"sharelab-test-{os.getpid()}"
    env = {
        "SHARELAB_NAME": name,
        "SHARELAB_IMAGE": image.name,
        "SHARELAB_PORT": str(free_port()),
        "JUPYTER_PORT": str(free_port()),
        "JUPYTER_TOKEN": secrets.token_hex(16),
        "LAN": "0",
    }
    env.pop("SHARELAB_PUBLIC_URL", None)
    try:
        t0 = time.monotonic()
        up = run([str(LAB_SH), "up", "podman"], env=env, timeout=600)
        report(f"lab.sh up (image cached): {time.monotonic() - t0:.0f} s")
        yield {**env, "name": name, "up_output": up.stdout}
    finally:
        run([str(LAB_SH), "down", "podman", "--volumes"], env=env, check=False, timeout=300)
        left = podman("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}", check=False)
        assert not left.stdout.strip(), f"containers left behind: {left.stdout}"


def test_provider_serves_the_lab_over_the_pod_network(
    lab_pod: dict[str, str], lab_home: Path, server_factory
) -> None:
    """The official client in the lab container reads the provider container's share, like a local run."""
    name, pport, jport, token = (
        lab_pod["name"],
        lab_pod["SHARELAB_PORT"],
        lab_pod["JUPYTER_PORT"],
        lab_pod["JUPYTER_TOKEN"],
    )
    assert f"JupyterLab: http://127.0.0.1:{jport}/lab?token={token}" in lab_pod["up_output"]

    # Published on loopback only (no LAN unless asked for).
    ports = podman("port", f"{name}-provider").stdout.split()
    published = [p for p in ports if ":" in p]
    assert published and all(p.startswith("127.0.0.1:") for p in published), ports
    assert requests.get(f"http://127.0.0.1:{pport}/health", timeout=10).json()["status"] == "ok"

    # JupyterLab answers only with its token.
    base = f"http://127.0.0.1:{jport}"
    assert requests.get(f"{base}/api", timeout=10).status_code == 200
    assert requests.get(f"{base}/api/contents", timeout=10).status_code == 403
    r = requests.get(
        f"{base}/api/contents/notebooks", headers={"Authorization": f"token {token}"}, timeout=10
    )
    assert r.status_code == 200, r.text

    # Both services pass their healthcheck; the lab sees the provider's pid (shared pid namespace).
    for svc in ("provider", "lab"):
        hc = podman("healthcheck", "run", f"{name}-{svc}", check=False)
        assert hc.returncode == 0, f"{svc}: {hc.stdout}{hc.stderr}"
    status = podman("exec", f"{name}-lab", "sharelab", "status").stdout
    assert "http://provider:8080/delta-sharing/" in status, status

    setup = last_json(
        podman("exec", "-i", f"{name}-provider", "python", "-", stdin=PROVIDER_SETUP).stdout
    )
    remote = last_json(
        podman(
            "exec", "-i", f"{name}-lab", "python", "-", setup["profile"], stdin=RECIPIENT_READ
        ).stdout
    )
    assert remote["endpoint"] == "http://provider:8080/delta-sharing/"
    assert {k: v["rows"] for k, v in remote["tables"].items()} == setup["rows"]
    assert setup["rows"]["sales_domain.bookings"] > 0

    # The same scripts on this machine: same tables, same rows, same contents.
    server_factory(lab_home)
    env = {"SHARELAB_HOME": str(lab_home)}
    local_setup = last_json(run([sys.executable, "-"], env=env, stdin=PROVIDER_SETUP).stdout)
    local = last_json(
        run([sys.executable, "-", local_setup["profile"]], env=env, stdin=RECIPIENT_READ).stdout
    )
    assert local["tables"] == remote["tables"]


def _figures(summary: dict) -> dict[str, dict]:
    return {
        nb["notebook"]: {k: v for k, v in nb["key_figures"].items() if not VOLATILE.search(k)}
        for nb in summary["notebooks"]
    }


def test_batch_in_container_matches_local_run(
    image: BuiltImage, tmp_path: Path, lab_home: Path
) -> None:
    """``sharelab batch`` in a container with no network gives the results of a local batch run.

    This is a parity check: each notebook has the same status in both runs and the same key figures;
    and each plot-making cell of the container's executed notebooks carries an image.
    Whether the notebooks themselves are right is the notebook tests' job; when none of them runs
    locally yet, there is nothing to compare and the test skips, naming the failures.
    """
    if not any((REPO / "notebooks").glob("*.ipynb")):
        pytest.skip("no notebooks in notebooks/ yet: nothing for sharelab batch to run")
    t0 = time.monotonic()
    local_proc = run(
        [
            sys.executable,
            "-m",
            "helpers",
            "batch",
            "--out",
            str(tmp_path / "local"),
            "--port",
            str(free_port()),
            "--keep-going",
        ],
        env={"SHARELAB_HOME": str(lab_home)},
        timeout=1500,
        check=False,
    )
    local_seconds = time.monotonic() - t0
    local_file = tmp_path / "local" / "summary.json"
    assert local_file.exists(), local_proc.stdout[-3000:] + local_proc.stderr[-3000:]
    local = json.loads(local_file.read_text())
    if not any(nb["status"] == "ok" for nb in local["notebooks"]):
        pytest.skip(
            "the batch does not run locally yet: "
            + "; ".join(f"{nb['notebook']}: {nb['error'][:120]}" for nb in local["notebooks"])
        )

    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, LAB_UID, LAB_UID)
    t0 = time.monotonic()
    proc = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{work}:/home/lab/work",
        image.name,
        "batch",
        "--out",
        "/home/lab/work/run",
        "--keep-going",
        timeout=1500,
        check=False,
    )
    container_seconds = time.monotonic() - t0
    summary_file = work / "run" / "summary.json"
    assert summary_file.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    in_container = json.loads(summary_file.read_text())
    report(
        f"batch: container {container_seconds:.0f} s, local {local_seconds:.0f} s, "
        f"{sum(nb['status'] == 'ok' for nb in local['notebooks'])}/{len(local['notebooks'])} notebooks ok "
        "locally"
    )

    statuses = {nb["notebook"]: nb["status"] for nb in in_container["notebooks"]}
    expected = {nb["notebook"]: nb["status"] for nb in local["notebooks"]}
    errors = {
        nb["notebook"]: nb["error"] for nb in in_container["notebooks"] if nb["status"] == "failed"
    }
    assert statuses == expected, f"container errors: {errors}"
    assert (proc.returncode == 0) == (local_proc.returncode == 0)
    ok = [n for n, st in expected.items() if st == "ok"]
    container_figures, local_figures = _figures(in_container), _figures(local)
    assert {n: container_figures[n] for n in ok} == {n: local_figures[n] for n in ok}

    # Every plot-making cell of the notebooks run in the image carries an image (issue 12: with
    # MPLBACKEND=Agg in the image, none did, and nothing noticed).
    plotted, missing = 0, {}
    for nb in in_container["notebooks"]:
        if nb["status"] != "ok":
            continue
        executed = work / Path(nb["output"]).relative_to("/home/lab/work")
        cells = nbformat.read(executed, as_version=4)
        plotted += sum(
            "image/png" in o.get("data", {}) for c in cells.cells for o in c.get("outputs", [])
        )
        if gaps := cells_missing_plots(cells):
            missing[nb["notebook"]] = gaps
    assert not missing, f"plot cells without an image in the container's batch run: {missing}"
    assert plotted >= 4, "the curriculum's plots (03's dashboard, 05, 07, 08) should be in the run"


def test_compose_file_publishes_on_loopback_with_a_token() -> None:
    """compose.yaml: the pod's layout (lab in the provider's network and pids), loopback ports, a token."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"provider", "lab"}
    for svc in services.values():
        assert svc["image"].startswith("${SHARELAB_IMAGE:-")
        assert svc["build"]["dockerfile"] == "docker/Dockerfile"
        assert "lab-home:/lab-home" in svc["volumes"]
    provider, lab = services["provider"], services["lab"]
    assert provider["command"] == ["provider"]
    assert provider["environment"]["SHARELAB_PUBLIC_URL"].endswith("http://provider:8080}")
    # The provider follows SHARELAB_BIND (workshop mode: every interface, over TLS unless SHARELAB_TLS=0);
    # the instructor's JupyterLab is published on 127.0.0.1 in every mode.
    assert provider["ports"] == [
        "${SHARELAB_BIND:-127.0.0.1}:${SHARELAB_PORT:-8080}:8080",
        "127.0.0.1:${JUPYTER_PORT:-8888}:8888",
    ]
    assert provider["environment"]["SHARELAB_BIND"] == "${SHARELAB_BIND:-127.0.0.1}"
    assert provider["environment"]["SHARELAB_TLS"] == "${SHARELAB_TLS:-}"
    assert provider["container_name"] == "${SHARELAB_NAME:-sharelab}-provider"
    assert lab["container_name"] == "${SHARELAB_NAME:-sharelab}-lab"
    assert provider["init"] is True
    assert lab["command"] == ["lab"]
    assert "ports" not in lab  # published by the provider, whose network the lab joins
    assert lab["network_mode"] == "service:provider"
    assert lab["pid"] == "service:provider"
    assert (
        "JUPYTER_TOKEN" in lab["environment"]
    )  # passed through; unset -> generated in the container
    assert lab["depends_on"]["provider"]["condition"] == "service_healthy"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile
    assert re.search(r"^USER lab$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile
