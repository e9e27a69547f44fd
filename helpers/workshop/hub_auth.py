"""The hub's sign-in: an attendee's name and the join code the instructor handed them.

Loaded by JupyterHub (``c.JupyterHub.authenticator_class``) from the repository's virtual environment. The
codes live in ``<lab home>/hub/joins.json`` as SHA-256 hashes (``{"ada": "<hex>"}``), written by
:func:`helpers.workshop.hub.provision`; the hub user (and OS user) of attendee ``ada`` is ``sl-ada``, so an
attendee's name can never be a real account of the machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Unicode

__all__ = ["USER_PREFIX", "JoinCodeAuthenticator", "hash_code", "os_user"]

USER_PREFIX = "sl-"


def hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def os_user(attendee: str) -> str:
    """The hub and OS user of an attendee (``ada`` -> ``sl-ada``)."""
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in attendee.strip().lower())
    return (USER_PREFIX + clean)[:32]


class JoinCodeAuthenticator(Authenticator):
    """Accepts ``(attendee name, join code)`` pairs from the roster's ``joins.json``."""

    joins_file = Unicode("", config=True, help="the roster's hashed join codes (joins.json)")

    def _joins(self) -> dict[str, str]:
        try:
            data = json.loads(Path(self.joins_file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        name = os_user(str(data.get("username", "")))
        code = str(data.get("password", ""))
        expected = self._joins().get(name)
        if expected and code and hmac.compare_digest(expected, hash_code(code)):
            return name
        self.log.warning("failed sign-in for %r", name)
        return None
