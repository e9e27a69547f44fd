"""What the container tests share: commands with their output on failure, podman with lab.sh's settings,
the tools they need, and the lab image built once per session (``conftest.image``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
LAB_SH = DOCKER / "lab.sh"
RUN_DEMO = REPO / "run-demo.sh"
MAKE_BASE = DOCKER / "make-base-image.sh"
BASE_IMAGE = "localhost/sharelab-base:bookworm"
IMAGE = "localhost/sharelab:latest"
LAB_UID = 1000


def run(
    cmd: list[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure show its output in the assertion message."""
    proc = subprocess.run(
        cmd,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd[:6])} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """podman with the settings docker/lab.sh uses on this host (runtime, ulimits)."""
    return run([str(LAB_SH), "engine", "podman", *args], **kwargs)


def last_json(text: str) -> dict:
    """The last line of ``text`` that is a JSON object (scripts print their result last)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON result in:\n{text[-2000:]}")


_CONFIG: list[pytest.Config] = []


def report(line: str) -> None:
    """Print a measured figure on the terminal, past pytest's output capture."""
    plugins = _CONFIG[0].pluginmanager if _CONFIG else None
    reporter = plugins.get_plugin("terminalreporter") if plugins else None
    capture = plugins.get_plugin("capturemanager") if plugins else None
    if reporter is None or capture is None:
        print(f"[container] {line}")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"[container] {line}")


def ensure_tools() -> None:
    """Install podman, debootstrap and runc from Debian when missing, or skip with the reason."""
    if os.environ.get("SHARELAB_SKIP_CONTAINER") == "1":
        pytest.skip("SHARELAB_SKIP_CONTAINER=1")
    if os.geteuid() != 0:
        pytest.skip(
            "the container test needs root (debootstrap, rootful podman): run the suite as root "
            "or in CI"
        )
    missing = [t for t in ("podman", "debootstrap", "runc") if not shutil.which(t)]
    if not missing:
        return
    if not shutil.which("apt-get"):
        pytest.skip(f"{', '.join(missing)} missing and no apt-get to install them")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "podman", "debootstrap", "runc"], env=env, timeout=900)


@dataclass(frozen=True)
class BuiltImage:
    name: str
    base_seconds: float
    build_seconds: float
    size_bytes: int


def build_image(pytestconfig: pytest.Config) -> BuiltImage:
    """The lab image, built from the locally made base (the base is cached between runs)."""
    _CONFIG[:] = [pytestconfig]
    ensure_tools()
    t0 = time.monotonic()
    run([str(MAKE_BASE), BASE_IMAGE], env={"ENGINE": "podman"}, timeout=1200)
    base_seconds = time.monotonic() - t0
    t0 = time.monotonic()
    run(
        [str(LAB_SH), "build", "podman"],
        env={"BASE_IMAGE": BASE_IMAGE, "SHARELAB_IMAGE": IMAGE},
        timeout=1800,
    )
    build_seconds = time.monotonic() - t0
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    report(
        f"base image {base_seconds:.0f} s (0 when cached); image build {build_seconds:.0f} s; "
        f"image size {size / 1e6:.0f} MB"
    )
    return BuiltImage(IMAGE, base_seconds, build_seconds, size)
