"""The JupyterHub configuration of the hub route, written to ``<lab home>/hub/jupyterhub_config.py``.

- sign-in: :class:`helpers.workshop.hub_auth.JoinCodeAuthenticator` (attendee name + join code); no
  attendee is an admin, so the hub's admin pages and other users' servers are out of their reach;
- one OS user per attendee (``sl-<name>``, home ``/home/sl-<name>``, mode 0700), spawned by JupyterHub's
  ``LocalProcessSpawner`` (the hub runs as root) with ``jupyterhub-singleuser`` from the attendees'
  virtual environment (``.hub-venv``, on a Python every user can run); each
  server gets its own ``SHARELAB_HOME`` (``~/.sharelab``), the lab CA bundle in its home, and
  ``SHARELAB_REPORT_PROGRESS=~/me.share`` so lab checks reach the instructor's board;
- TLS with the lab CA's server certificate on ``https://HOST:PORT``; the proxy is the project's own
  ``hub/node_modules/.bin/configurable-http-proxy`` (npm);
- ``jupyterhub-idle-culler`` as a hub service (idle servers stopped after ``cull_seconds``);
- state (users, servers) in ``<lab home>/hub/jupyterhub.sqlite``: the roster survives a hub restart;
- a ``sharelab`` service whose API token (``<lab home>/hub/api.token``, 0600) lets the instructor's tools and
  the tests create users and start servers through the REST API.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["config_text"]


def config_text(
    *,
    hub_dir: Path,
    repo: Path,
    bind_url: str,
    cert: Path,
    key: Path,
    api_token_file: Path,
    cull_seconds: int,
    homes: Path,
    user_venv: Path,
) -> str:
    """The text of ``jupyterhub_config.py`` (the hub's API on ``port + 1``, the proxy's on ``port + 2``)."""
    port = int(bind_url.rsplit(":", 1)[1])
    py = Path(sys.executable)
    values = {
        "hub_dir": str(hub_dir),
        "venv_bin": str(user_venv / "bin"),
        "python": str(py),
        "chp": str(repo / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"),
        "bind_url": bind_url,
        "cert": str(cert),
        "key": str(key),
        "api_token_file": str(api_token_file),
        "cull": int(cull_seconds),
        "homes": str(homes),
        # internal ports next to the public one, stable across restarts (running servers keep them)
        "hub_api": f"http://127.0.0.1:{port + 1}",
        "proxy_api": f"http://127.0.0.1:{port + 2}",
    }
    return f"""# Written by sharelab (helpers/workshop/hub_config.py); edit the generator, not this file.
import json
from pathlib import Path

V = json.loads({json.dumps(json.dumps(values))})
c = get_config()  # noqa: F821

c.JupyterHub.bind_url = V["bind_url"]
c.JupyterHub.ssl_cert = V["cert"]
c.JupyterHub.ssl_key = V["key"]
c.JupyterHub.hub_bind_url = V["hub_api"]
c.ConfigurableHTTPProxy.api_url = V["proxy_api"]
c.JupyterHub.db_url = "sqlite:///" + V["hub_dir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = V["hub_dir"] + "/cookie_secret"
c.JupyterHub.pid_file = V["hub_dir"] + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = False  # a hub restart leaves attendees' servers running
c.ConfigurableHTTPProxy.command = [V["chp"]]
c.ConfigurableHTTPProxy.pid_file = V["hub_dir"] + "/proxy.pid"

c.JupyterHub.authenticator_class = "helpers.workshop.hub_auth.JoinCodeAuthenticator"
c.JoinCodeAuthenticator.joins_file = V["hub_dir"] + "/joins.json"
c.Authenticator.allow_all = True  # only roster names with their join code get past authenticate()
c.Authenticator.admin_users = set()

c.Spawner.cmd = [V["venv_bin"] + "/jupyterhub-singleuser"]
# kernels on unix sockets in the attendee's runtime directory (0700): no other attendee can connect to
# them, and a room of kernels starting at once cannot take each other's TCP ports (helpers.kernels)
c.Spawner.args = ["--KernelManager.transport=ipc"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90


def _home(spawner):
    return V["homes"] + "/" + spawner.user.name


c.Spawner.environment = {{
    "SHARELAB_HOME": lambda s: _home(s) + "/.sharelab",
    "SHARELAB_REPORT_PROGRESS": lambda s: _home(s) + "/me.share",
    "REQUESTS_CA_BUNDLE": lambda s: _home(s) + "/.sharelab-ca-bundle.pem",
    "SSL_CERT_FILE": lambda s: _home(s) + "/.sharelab-ca-bundle.pem",
    "PATH": V["venv_bin"] + ":/usr/local/bin:/usr/bin:/bin",
}}

c.JupyterHub.load_roles = [
    {{
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }},
    {{
        "name": "sharelab-instructor",
        "scopes": [
            "admin:users", "admin:servers", "list:users", "read:users", "access:servers",
            "list:services", "read:services",
        ],
        "services": ["sharelab"],
    }},
]
c.JupyterHub.services = [
    {{
        "name": "idle-culler",
        "command": [V["python"], "-m", "jupyterhub_idle_culler", "--timeout=" + str(V["cull"])],
    }},
    {{"name": "sharelab", "api_token": Path(V["api_token_file"]).read_text().strip()}},
]
"""
