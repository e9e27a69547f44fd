"""The ``sharelab`` command line.

Each feature module owns its subcommands and exposes ``register_cli(subparsers)``; this module only wires
them together and turns :class:`~helpers.exceptions.SharelabError` into a one-line error and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from helpers import __version__
from helpers.exceptions import SharelabError

# Modules that contribute subcommands, in the order of ``sharelab --help``.
_COMMAND_MODULES = (
    "helpers.sql",
    "helpers.tokens_cli",
    "helpers.datagen.cli",
    "helpers.server",
    "helpers.jupyter",
    "helpers.batch",
    "helpers.labs",
    "helpers.mesh_cli",
)


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--version", action="version", version=f"sharelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a feature not built yet must not break the others
            if exc.name and (name + ".").startswith(exc.name + "."):
                continue
            raise
        module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except SharelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
