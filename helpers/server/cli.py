"""``sharelab serve|start|stop|status``: the server's subcommands."""

from __future__ import annotations

import argparse
import json

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


def _do_serve(a: argparse.Namespace) -> int:
    serve(a.home, a.host, a.port, a.public_url)
    return 0


def _do_start(a: argparse.Namespace) -> int:
    state = start(a.home, a.host, a.port, a.public_url)
    word = "already running" if state.get("already_running") else "started"
    print(f"server {word}: pid {state['pid']}, endpoint {state['endpoint']}")
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
