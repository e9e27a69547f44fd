"""The lab home: where the catalog, the Delta tables, the server state and the profiles live (paths only).

The lab home is resolved by :func:`resolve_home`: the explicit argument (``sharelab --home DIR``), else the
environment variable ``SHARELAB_HOME``, else ``~/.sharelab``. ``run-demo.sh`` exports
``SHARELAB_HOME=<repo>/lab-home`` unless it is already set. The directory is created when missing.
This module knows paths only (it imports nothing of the catalog): open the catalog with
:func:`helpers.catalog.open_catalog`.

Layout (see ``docs/design.md``)::

    $SHARELAB_HOME/
      catalog.db                    SQLite provider catalog (WAL)
      data/<dataset>/<schema>/<table>/   Delta tables written by the generators
      server/server.json            the running server: pid, host, port, public_url, endpoint, started_at
      profiles/<recipient>.share    recipient profile files (mode 0600)
      jupyter/                      JupyterLab runtime state
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.exceptions import InvalidArgumentError
from helpers.procs import pid_alive

#: Environment variable naming the lab home.
HOME_ENV = "SHARELAB_HOME"
#: Lab home used when neither ``--home`` nor ``$SHARELAB_HOME`` is given.
DEFAULT_HOME = Path("~/.sharelab")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Return the absolute lab home directory, creating it when missing.

    :param home: explicit directory (``sharelab --home DIR``); wins over ``$SHARELAB_HOME``.
    :raises InvalidArgumentError: when the path exists but is not a directory.
    """
    raw: str | os.PathLike[str] = home if home else (os.environ.get(HOME_ENV) or DEFAULT_HOME)
    path = Path(raw).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InvalidArgumentError(
            f"lab home {path} exists but is not a directory; pass --home DIR or set {HOME_ENV} "
            "to a directory"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class LabHome:
    """A resolved lab home and the paths inside it.

    :param path: the lab home directory (absolute).
    """

    path: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> LabHome:
        """The lab home for ``home`` (see :func:`resolve_home`)."""
        return cls(resolve_home(home))

    @property
    def catalog_path(self) -> Path:
        """The SQLite provider catalog."""
        return self.path / "catalog.db"

    @property
    def data_dir(self) -> Path:
        """Root of the generated Delta tables."""
        return self.path / "data"

    @property
    def server_dir(self) -> Path:
        """Server state: ``server.json``, pid, log, HMAC key."""
        return self.path / "server"

    @property
    def profiles_dir(self) -> Path:
        """Recipient profile files (mode 0600)."""
        return self.path / "profiles"

    @property
    def jupyter_dir(self) -> Path:
        """JupyterLab runtime state."""
        return self.path / "jupyter"

    def server_state(self) -> dict[str, Any] | None:
        """The running server's ``server/server.json``, or None when absent, unreadable or its pid is dead."""
        state_file = self.server_dir / "server.json"
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict):
            return None
        try:
            pid = int(state.get("pid", 0))
        except (TypeError, ValueError):
            return None
        return state if pid_alive(pid) and self.server_lock_held() else None

    def server_lock_held(self) -> bool:
        """Whether a live server holds ``server/server.lock``.

        ``server.json`` alone can lie: its pid may have died and been reused by another process. The
        server keeps an exclusive ``flock`` on the lock file for its whole life, so a failed non-blocking
        lock attempt proves it runs. Without ``fcntl`` (Windows) the pid check has to do.
        """
        lock_file = self.server_dir / "server.lock"
        if not lock_file.exists():
            return False
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        fd = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)
