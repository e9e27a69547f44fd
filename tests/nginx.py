"""nginx from Debian's packages in front of sharelab servers on loopback (``docker/nginx/``'s template)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import requests

from tests.support import REPO

__all__ = ["NGINX", "render_nginx", "start_nginx"]

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def render_nginx(
    prefix: Path, listen: int, upstreams: list[int], link_conf: Path, link_root: str = "/"
) -> Path:
    """``docker/nginx/sharelab.conf.template`` for loopback ports; returns the config file.

    ``link_conf`` is the secure_link secret's file (``sharelab secure-link-conf``), ``link_root`` the
    directory the links map to ($SHARELAB_SECURE_LINK_ROOT).
    """
    text = (REPO / "docker" / "nginx" / "sharelab.conf.template").read_text()
    lines = " ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
    text = (
        text.replace("@PREFIX@", str(prefix))
        .replace("@LISTEN@", f"127.0.0.1:{listen}")
        .replace("@UPSTREAMS@", lines)
        .replace("@USER@", "user root;" if os.geteuid() == 0 else "")
        .replace("@LINK_CONF@", str(link_conf))
        .replace("@LINK_ROOT@", link_root.rstrip("/") + "/")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def start_nginx(prefix: Path, conf: Path, url: str) -> subprocess.Popen[bytes]:
    """Run nginx with ``conf`` in the foreground; returns once ``url``/health answers through it."""
    assert NGINX is not None
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=open(prefix / "stderr.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(prefix / 'stderr.log').read_text()[-800:]}")
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(
        f"nginx did not answer {url}/health: {(prefix / 'error.log').read_text()[-800:]}"
    )
