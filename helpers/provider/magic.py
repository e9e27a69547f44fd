"""``%%sharelab``: run provider SQL from a notebook cell.

Load it with ``%load_ext helpers.magic``, then::

    %%sharelab
    CREATE SHARE IF NOT EXISTS retail COMMENT 'demo';
    SHOW SHARES

The cell's value is the last statement's DataFrame (so Jupyter renders it); ``--all`` displays every
statement's result, ``--out NAME`` also stores the last result in the variable ``NAME``, ``--home DIR``
picks a lab home other than ``$SHARELAB_HOME``. The one-line form ``%sharelab SHOW SHARES`` works too.
Errors are raised as :class:`~helpers.exceptions.SharelabError` with one line saying what to fix.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from IPython.core.magic import Magics, line_cell_magic, magics_class

from helpers.exceptions import SharelabError
from helpers.provider import Provider

if TYPE_CHECKING:
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

_PROVIDERS: dict[str, Provider] = {}


def provider_for(home: str | None = None) -> Provider:
    """The (cached) :class:`Provider` of ``home`` for this kernel."""
    from helpers.home import resolve_home

    key = str(resolve_home(home))
    if key not in _PROVIDERS:
        _PROVIDERS[key] = Provider(key)
    return _PROVIDERS[key]


# Leading options of the magic line; whatever follows is SQL (for the one-line %sharelab form).
_OPTION = re.compile(
    r"""^\s*(?:(?P<key>--home|--out|-o)\s+(?P<value>"[^"]*"|'[^']*'|\S+)|(?P<flag>--all))(?=\s|$)"""
)


def _options(line: str) -> tuple[argparse.Namespace, str]:
    """Split ``line`` into the magic's options (``--home DIR``, ``--all``, ``--out NAME``) and SQL text."""
    args = argparse.Namespace(home=None, all=False, out=None)
    rest = line
    while True:
        match = _OPTION.match(rest)
        if match is None:
            break
        if match.group("flag"):
            args.all = True
        else:
            value = match.group("value")
            if value[:1] in "\"'" and value[-1:] == value[:1]:
                value = value[1:-1]
            setattr(args, "home" if match.group("key") == "--home" else "out", value)
        rest = rest[match.end() :]
    rest = rest.strip()
    if rest.startswith("-") and not rest.startswith("--"):
        raise SharelabError(
            f"%%sharelab does not know {rest.split()[0]}; options are --home DIR, --all, --out NAME"
        )
    if rest.startswith("--") and not rest.startswith("-- "):
        word = rest.split()[0]
        raise SharelabError(
            f"%%sharelab does not know {word}; options are --home DIR, --all, --out NAME"
        )
    return args, rest


@magics_class
class SharelabMagics(Magics):
    """The ``%%sharelab`` / ``%sharelab`` magics."""

    @line_cell_magic
    def sharelab(self, line: str, cell: str | None = None) -> pd.DataFrame | None:
        args, rest = _options(line)
        text = cell if cell is not None else rest
        if not text or not text.strip():
            raise SharelabError("%%sharelab needs SQL: put statements in the cell")
        provider = provider_for(args.home)
        results = provider.sql_all(text)
        if args.all and len(results) > 1:
            from IPython.display import display

            for frame in results[:-1]:
                display(frame)
        last = results[-1] if results else None
        if args.out and self.shell is not None:
            self.shell.user_ns[args.out] = last
        return last


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext helpers.magic``."""
    ipython.register_magics(SharelabMagics)
