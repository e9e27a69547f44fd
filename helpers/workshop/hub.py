"""The hub route: a JupyterHub on the instructor's machine, one OS user and one JupyterLab per attendee.

:func:`provision` (root only) makes an attendee ready to sign in: the recipient and its grants (through
:func:`helpers.workshop.roster.add_attendees`), the OS user ``sl-<name>`` with a private home (0700), the
attendee's profile issued straight into that home (``~/me.share`` + the lab CA beside it, no activation
link needed), a CA bundle (certifi + lab CA) for the client's downloads, the recipient notebooks and labs,
and a join code (hashed in ``<lab home>/hub/joins.json``). :func:`start` writes the configuration
(:mod:`helpers.workshop.hub_config`) and starts ``jupyterhub`` in the background; :func:`stop` stops it.

The attendee cannot read another attendee's home (0700, other OS user), the instructor's lab home (root's,
0700: catalog, signing key, CA key) nor the hub's state. The instructor's JupyterLab of the hub route is
:mod:`helpers.workshop.instructor_lab` (a root-only unix socket, no TCP port an attendee could try).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from helpers.catalog import open_catalog
from helpers.exceptions import InvalidArgumentError, ServerError
from helpers.home import LabHome
from helpers.procs import live_state, spawn_and_wait, terminate
from helpers.profiles import issue_profile
from helpers.recipient.trust import write_bundle
from helpers.tls import TlsFiles, client_context, prepare_tls
from helpers.workshop.hub_auth import hash_code, os_user
from helpers.workshop.hub_config import config_text
from helpers.workshop.roster import add_attendees, join_endpoint

__all__ = ["HOMES", "HubJoin", "hub_dir", "provision", "start", "status", "stop"]

REPO = Path(__file__).resolve().parents[2]
HOMES = Path("/home")
#: The attendees' virtual environment: the lab's own ``.venv`` may sit on a Python under root's home,
#: which other users cannot run.
USER_VENV = REPO / ".hub-venv"
#: What each attendee gets in their home: the recipient notebooks and labs.
CONTENT = (
    "notebooks/03_recipient_open_client.ipynb",
    "notebooks/04_recipient_mounted_catalog.ipynb",
    "notebooks/06_recipient_consume_changes.ipynb",
    "labs/lab2_recipient.ipynb",
)
HubJoin = tuple[str, str, str]
"""(attendee, hub user, join code)."""


def hub_dir(home: LabHome) -> Path:
    d = home.path / "hub"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def _require_root() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise InvalidArgumentError(
            "the hub route makes one OS user per attendee: run it as root (sudo ./run-demo.sh workshop)"
        )


def _ensure_os_user(user: str, homes: Path) -> Path:
    home = homes / user
    try:
        pwd.getpwnam(user)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
             "--user-group", user],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServerError(f"useradd {user} failed: {done.stderr.strip()}") from None
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    return home


def _chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _update_joins(hdir: Path, codes: dict[str, str]) -> None:
    path = hdir / "joins.json"
    try:
        joins = json.loads(path.read_text())
    except (OSError, ValueError):
        joins = {}
    joins.update({user: hash_code(code) for user, code in codes.items()})
    tmp = path.with_name("joins.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(joins, f, indent=2)
    os.replace(tmp, path)


def _copy_pointed_at(source: Path, target: Path, profile: Path) -> None:
    """Copy a recipient notebook with its ``profile_path`` parameter set to the attendee's profile, so it
    runs as it is in the attendee's JupyterLab (and when graded where it is)."""
    import nbformat

    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            lines = cell.source.split("\n")
            for i, line in enumerate(lines):
                if line.startswith("profile_path = None"):
                    comment = "  # your profile, installed by the instructor"
                    lines[i] = f"profile_path = {str(profile)!r}{comment}"
            cell.source = "\n".join(lines)
            break
    nbformat.write(nb, target)


def provision(
    home: LabHome,
    names: Iterable[str],
    *,
    shares: Sequence[str] | None = None,
    endpoint: str | None = None,
    homes: Path = HOMES,
) -> list[HubJoin]:
    """Make each attendee ready to sign in to the hub; returns (attendee, hub user, join code)."""
    _require_root()
    catalog = open_catalog(home)
    names = list(names)
    base = join_endpoint(home, endpoint)
    add_attendees(catalog, home, names, shares=shares, endpoint=base)  # recipients, grants, roster
    ca = home.path / "tls" / "ca.pem"
    out: list[HubJoin] = []
    codes: dict[str, str] = {}
    for name in names:
        user = os_user(name)
        uhome = _ensure_os_user(user, homes)
        profile = uhome / "me.share"
        issue_profile(catalog, name, base, out=profile)
        if ca.is_file():
            shutil.copyfile(ca, uhome / "me.share.ca.pem")
            shutil.copyfile(write_bundle(ca), uhome / ".sharelab-ca-bundle.pem")
        for rel in CONTENT:
            target = uhome / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():  # never overwrite an attendee's work
                _copy_pointed_at(REPO / rel, target, profile)
        (uhome / ".sharelab").mkdir(exist_ok=True)
        _chown_tree(uhome, user)
        code = "-".join(secrets.token_hex(2) for _ in range(3))
        codes[user] = code
        out.append((name, user, code))
    _update_joins(hub_dir(home), codes)
    return out


# ======================================================================================== lifecycle
def _state_file(home: LabHome) -> Path:
    return hub_dir(home) / "hub.json"


def status(home: LabHome) -> dict[str, Any] | None:
    """The running hub's state, or None."""
    return live_state(_state_file(home))


def api_token(home: LabHome) -> str:
    """The ``sharelab`` hub service's API token (made once, 0600)."""
    path = hub_dir(home) / "api.token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def _healthy(url: str, ca: Path | None) -> bool:
    import urllib.request

    ctx = client_context(ca) if ca else None
    try:
        with urllib.request.urlopen(f"{url}/hub/health", timeout=2, context=ctx) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except OSError:
        return False


def start(
    home: LabHome,
    *,
    host: str = "0.0.0.0",
    port: int = 8000,
    public_host: str | None = None,
    cull_seconds: int = 3600,
    homes: Path = HOMES,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Start the hub over TLS (the lab CA's certificate) in the background; idempotent."""
    _require_root()
    running = status(home)
    if running:
        return running
    chp = REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        raise ServerError(f"{chp} is missing: run ./run-demo.sh workshop (it runs npm install)")
    if not (USER_VENV / "bin" / "jupyterhub-singleuser").exists():
        raise ServerError(f"{USER_VENV} is missing: run ./run-demo.sh workshop (it makes it)")
    extra = [public_host] if public_host else []
    files: TlsFiles = prepare_tls(home.path, extra_names=extra)
    hdir = hub_dir(home)
    api_token(home)
    cfg = hdir / "jupyterhub_config.py"
    cfg.write_text(
        config_text(
            hub_dir=hdir, repo=REPO, bind_url=f"https://{host}:{port}", cert=files.cert,
            key=files.key, api_token_file=hdir / "api.token", cull_seconds=cull_seconds,
            homes=homes, user_venv=USER_VENV,
        )
    )  # fmt: skip
    local = f"https://{public_host or '127.0.0.1'}:{port}"
    proc = spawn_and_wait(
        [sys.executable, "-m", "jupyterhub", "-f", str(cfg)],
        ready=lambda: _healthy(local, files.ca),
        timeout=timeout,
        log=hdir / "hub.log",
        env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"),
        cwd=hdir,
    )
    state = {
        "pid": proc.pid,
        "url": local,
        "api_url": f"{local}/hub/api",
        "log": str(hdir / "hub.log"),
    }
    _state_file(home).write_text(json.dumps(state, indent=2))
    return state


def stop(home: LabHome, timeout: float = 20.0) -> bool:
    """Stop the hub (its proxy and services stop with it); False when none ran."""
    state = status(home)
    if state is None:
        return False
    terminate(int(state["pid"]), timeout)
    _state_file(home).unlink(missing_ok=True)
    return True
