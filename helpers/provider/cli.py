"""``sharelab sql "STATEMENTS"``: run provider SQL from the shell and print each result as a table."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from helpers.exceptions import SharelabError

if TYPE_CHECKING:
    import pandas as pd


def format_frame(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """A result as a plain-text table (all columns, long values kept)."""
    import pandas as pd

    if frame.shape[1] == 0:
        return "OK"
    if list(frame.columns) == ["status"] and len(frame) == 1:
        return str(frame["status"].iloc[0])
    if frame.empty:
        return " | ".join(str(c) for c in frame.columns) + "\n(0 rows)"
    with pd.option_context(
        "display.max_rows",
        max_rows,
        "display.max_columns",
        None,
        "display.width",
        10_000,
        "display.max_colwidth",
        200,
    ):
        text = frame.to_string(index=False)
    rows = len(frame)
    return f"{text}\n({rows} row{'s' * (rows != 1)})"


def _cli_sql(args: argparse.Namespace) -> int:
    # imported here: building the parser (sharelab sql --help) needs neither pandas nor the engines
    from helpers.provider import Provider, iter_script
    from helpers.sql import parse

    text = args.statements
    if args.file and text:
        raise SharelabError("give the SQL either as an argument or with --file, not both")
    if text == "-":
        text = sys.stdin.read()
    elif args.file:
        try:
            with open(args.file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise SharelabError(f"cannot read SQL file {args.file}: {exc.strerror}") from None
    if not text or not text.strip():
        raise SharelabError('no SQL given: pass statements, as in sharelab sql "SHOW SHARES;"')
    provider = Provider(args.home)
    several = len(parse(text).statements) > 1
    # Print each result as soon as its statement ran: after a failure the user sees what was applied.
    for i, (statement_text, frame) in enumerate(iter_script(provider, text)):
        if several:
            if i:
                print()
            print(f"-- {statement_text.splitlines()[0][:100]}")
        print(format_frame(frame), flush=True)
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sharelab sql``."""
    parser = subparsers.add_parser(
        "sql",
        help="run provider SQL (Databricks dialect): shares, recipients, grants, tables",
        description=(
            "Run one or more ';'-separated SQL statements against the lab's provider catalog and "
            'print each result as a table. Example: sharelab sql "CREATE SHARE s; SHOW SHARES". '
            "See docs/sql.md for the grammar."
        ),
    )
    parser.add_argument(
        "statements",
        nargs="?",
        default="",
        help="the SQL text ('-' reads it from standard input)",
    )
    parser.add_argument("-f", "--file", help="read the SQL from this file instead")
    parser.set_defaults(func=_cli_sql)
