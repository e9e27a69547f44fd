"""``sharelab generate``: build a dataset as Delta tables (or export it as parquet / CSV files).

::

    sharelab [--home DIR] generate airline|retail [--scale S] [--seed N] [--days N]
             [--start-date YYYY-MM-DD] [--no-overwrite] [--quiet] [--format parquet|csv --out DIR]

One progress bar per table on stderr, then a summary of row counts on stdout.
"""

from __future__ import annotations

import argparse

from helpers.exceptions import InvalidArgumentError


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand."""
    p = subparsers.add_parser(
        "generate",
        help="generate a synthetic dataset (airline or retail) as Delta tables",
        description="Generate a deterministic synthetic dataset into <home>/data/<dataset> and "
        "register its tables in the provider catalog as <dataset>.<schema>.<table>. "
        "With --format/--out, write parquet or CSV files instead.",
    )
    p.add_argument("dataset", metavar="DATASET", help="airline or retail")
    p.add_argument(
        "--scale",
        default="small",
        help="small, medium, large (airline also xlarge, the Redshift multi-domain scenario's volumes); default small",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument(
        "--days", type=int, default=None, help="days of data (default: airline 90, retail 14)"
    )
    p.add_argument(
        "--start-date",
        default=None,
        metavar="YYYY-MM-DD",
        help="first day of the data (fixed default per dataset; never today)",
    )
    p.add_argument(
        "--no-overwrite",
        action="store_true",
        help="refuse to replace an existing dataset (or existing export files)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--format",
        dest="fmt",
        default=None,
        help="export files in this format (parquet or csv) instead of Delta tables; needs --out",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="directory for --format files")
    p.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    """Run ``sharelab generate``; errors propagate as SharelabError (one line, exit 1)."""
    from helpers.datagen import export, generate

    common = dict(
        scale=args.scale,
        seed=args.seed,
        days=args.days,
        start_date=args.start_date,
        overwrite=not args.no_overwrite,
        progress=not args.quiet,
    )
    if args.fmt is not None or args.out is not None:
        if args.out is None:
            raise InvalidArgumentError("--format needs --out DIR (the directory for the files)")
        summary = export(args.dataset, args.out, args.fmt or "parquet", **common)
    else:
        summary = generate(args.dataset, getattr(args, "home", None), **common)
    print(summary.format())
    if summary.registered:
        print(
            f"registered {len(summary.registered)} tables in the catalog as {summary.dataset}.<schema>.<table>"
        )
    return 0
