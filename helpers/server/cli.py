"""``sharelab serve|start|stop|status|secure-link-conf``: the server's subcommands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from helpers.exceptions import InvalidArgumentError
from helpers.home import LabHome
from helpers.server.cluster import signing_key_path
from helpers.server.lifecycle import serve, start, status, stop
from helpers.server.limits import DEFAULT_PORT

__all__ = ["register_cli"]


def _add_bind(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="base URL recipients use, written into profiles (e.g. http://lab:8080); default: http://HOST:PORT",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS only, with a server certificate from the lab home's own CA (made once)",
    )
    p.add_argument(
        "--cert", default=None, metavar="FILE", help="PEM certificate chain (implies --tls)"
    )
    p.add_argument("--key", default=None, metavar="FILE", help="PEM private key of --cert")
    p.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="one more host name or address for the lab CA's server certificate (repeatable)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="server processes on the one port (default: $SHARELAB_WORKERS, else min(2, CPU cores))",
    )


def _tls_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    return {
        "tls": bool(a.tls or a.cert),
        "cert": a.cert,
        "key": a.key,
        "tls_names": tuple(a.tls_name),
        "workers": a.workers,
    }


def _do_serve(a: argparse.Namespace) -> int:
    serve(a.home, a.host, a.port, a.public_url, **_tls_kwargs(a))
    return 0


def _do_start(a: argparse.Namespace) -> int:
    state = start(a.home, a.host, a.port, a.public_url, **_tls_kwargs(a))
    word = "already running" if state.get("already_running") else "started"
    print(f"server {word}: pid {state['pid']}, endpoint {state['endpoint']}")
    tls = state.get("tls") or {}
    if tls.get("ca_fingerprint"):
        print(f"TLS: lab CA SHA-256 fingerprint {tls['ca_fingerprint']} (read it out to attendees)")
    return 0


def _do_stop(a: argparse.Namespace) -> int:
    print("server stopped" if stop(a.home) else "no server was running")
    return 0


def _do_status(a: argparse.Namespace) -> int:
    state = status(a.home)
    if a.json:
        print(json.dumps(state))
    elif state is None:
        print("no server running")
    else:
        health = "healthy" if state.get("healthy") else "not answering"
        print(f"server running: pid {state['pid']}, endpoint {state['endpoint']} ({health})")
        if (state.get("tls") or {}).get("ca_fingerprint"):
            print(f"TLS: lab CA SHA-256 fingerprint {state['tls']['ca_fingerprint']}")
    return 0


def _do_secure_link_conf(a: argparse.Namespace) -> int:
    from helpers.server.securelink import write_conf
    from helpers.server.signing import load_or_create_key

    key_file = signing_key_path(LabHome.resolve(a.home))
    if not key_file.is_file():
        raise InvalidArgumentError(
            f"no signing key at {key_file}; start the server once (it makes the key) or set "
            "SHARELAB_SIGNING_KEY_FILE to the replicas' key"
        )
    try:
        path = write_conf(load_or_create_key(key_file), a.file)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot write {a.file}: {exc.strerror}; choose a writable path"
        ) from None
    print(f"wrote {path} (0600): include it in nginx's secure_link location (docker/nginx/)")
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve``, ``start``, ``stop`` and ``status`` to the ``sharelab`` command."""
    p = subparsers.add_parser("serve", help="run the Delta Sharing server in the foreground")
    _add_bind(p)
    p.set_defaults(func=_do_serve)

    p = subparsers.add_parser("start", help="start the Delta Sharing server in the background")
    _add_bind(p)
    p.set_defaults(func=_do_start)

    p = subparsers.add_parser("stop", help="stop the background Delta Sharing server")
    p.set_defaults(func=_do_stop)

    p = subparsers.add_parser("status", help="show the Delta Sharing server's state")
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.set_defaults(func=_do_status)

    p = subparsers.add_parser(
        "secure-link-conf",
        help="write nginx's secure_link secret (derived from the signing key) for links nginx checks",
    )
    p.add_argument("file", help="the nginx include file to write (mode 0600)")
    p.set_defaults(func=_do_secure_link_conf)
