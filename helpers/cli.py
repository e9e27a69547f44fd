"""The ``sharelab`` command line.

Each feature module owns its subcommands and exposes ``register_cli(subparsers)``; this module only wires
them together and turns :class:`~helpers.exceptions.SharelabError` into a one-line error and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from helpers import __version__
from helpers.exceptions import SharelabError

# Each command and the module that owns it, in the order of ``sharelab --help``. Only the invoked
# command's module is imported, so a command does not pay for every feature's imports.
COMMANDS: dict[str, tuple[str, str]] = {
    "sql": (
        "helpers.provider.cli",
        "run Databricks-style SQL statements against the provider catalog",
    ),
    "profile": ("helpers.tokens_cli", "issue a token for a recipient and write its profile file"),
    "token": ("helpers.tokens_cli", "rotate, revoke or list a recipient's tokens"),
    "generate": ("helpers.datagen.cli", "generate the airline or retail dataset as Delta tables"),
    "serve": ("helpers.server", "run the Delta Sharing server in the foreground"),
    "start": ("helpers.server", "start the Delta Sharing server in the background"),
    "stop": ("helpers.server", "stop the background Delta Sharing server"),
    "status": ("helpers.server", "show the Delta Sharing server's state"),
    "secure-link-conf": (
        "helpers.server",
        "write nginx's secure_link secret (derived from the signing key) for links nginx checks",
    ),
    "jupyter": ("helpers.jupyter", "start, stop or show JupyterLab (127.0.0.1, token auth)"),
    "batch": ("helpers.batch", "execute every notebook and lab solution with papermill"),
    "labs": ("helpers.labs", "build and grade the hands-on labs"),
    "mesh": ("helpers.mesh.cli", "data mesh: products, compliance checks, lineage, report"),
    "workshop": ("helpers.workshop.cli", "workshop roster, live board, grades and the hub route"),
}


def _command_in(argv: list[str]) -> str | None:
    """The command word of ``argv`` (skipping the global options), or None."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--home", "--catalog-url"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the real subcommands of ``command``'s module and one-line stubs for the rest."""
    parser = argparse.ArgumentParser(
        prog="sharelab",
        description="sharelab: an offline Delta Sharing teaching lab (provider, server, recipients).",
    )
    parser.add_argument(
        "--home",
        metavar="DIR",
        help="lab home holding the catalog, tables and server state "
        "(default: $SHARELAB_HOME, else ~/.sharelab)",
    )
    parser.add_argument(
        "--catalog-url",
        metavar="URL",
        help="keep the catalog in PostgreSQL (postgresql://user@host:port/db[?schema=NAME]) instead of "
        "the lab home's SQLite file (default: $SHARELAB_CATALOG_URL)",
    )
    parser.add_argument("--version", action="version", version=f"sharelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0]).register_cli(sub)
    for name, (_module, summary) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "catalog_url", None):  # every catalog this process (and its children) opens
        from helpers.catalog.backends import CATALOG_URL_ENV

        os.environ[CATALOG_URL_ENV] = args.catalog_url
    try:
        result = args.func(args)
    except SharelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
