"""``sharelab mesh ...``: the data mesh from the command line (report, products, check, lineage,
violations, trends).

The command line reads the mesh; building it (domains, products, policies, publishing) reads best in a
notebook through :class:`helpers.mesh.Mesh`.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from helpers.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from helpers.mesh.facade import Mesh


def _mesh(args: argparse.Namespace) -> Mesh:
    from helpers.mesh.facade import Mesh  # imported lazily so `sharelab --help` stays fast

    return Mesh(getattr(args, "home", None))


def _now_option(text: str | None) -> datetime | None:
    """The ``--now`` option as a datetime (None: the mesh reads the catalog's clock)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"--now {text!r} is not an ISO timestamp; use e.g. 2026-01-31T12:00:00Z"
        ) from exc


def _print(frame: pd.DataFrame, empty: str) -> None:
    if frame.empty:
        print(empty)
        return
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(frame.to_string(index=False))


def _report(args: argparse.Namespace) -> int:
    path = _mesh(args).write_report(
        args.out, now=_now_option(args.now), measure=not args.no_measure
    )
    print(f"wrote {path}")
    return 0


def _products(args: argparse.Namespace) -> int:
    frame = _mesh(args).discover(args.text, domain=args.domain, owner=args.owner, tag=args.tag)
    _print(frame.drop(columns=["description"]), "no data products match")
    return 0


def _domains(args: argparse.Namespace) -> int:
    _print(_mesh(args).domains_frame(), "no domains registered")
    return 0


def _check(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    report = mesh.check(args.product, now=_now_option(args.now), record=not args.no_record)
    _print(report.to_frame().drop(columns=["product"]), "no policy applies to this product")
    print()
    _print(mesh.sla_status(args.product, now=_now_option(args.now)), "")
    print(
        f"\n{report.product}: {report.status} ({len(report.failures)} mandatory failure(s), "
        f"{len(report.warnings)} warning(s))"
    )
    return 0 if report.passed else 3


def _lineage(args: argparse.Namespace) -> int:
    impact = _mesh(args).impact(args.table)
    print(impact.summary())
    print()
    _print(impact.to_frame(), "nothing depends on it")
    consumers = impact.consumers()
    if len(consumers):
        print()
        _print(consumers, "")
    if len(impact.usage):
        print()
        _print(impact.usage, "")
    return 0


def _violations(args: argparse.Namespace) -> int:
    bad = _mesh(args).access_violations(args.product)
    frame = pd.DataFrame(
        [(v.share, v.recipient, v.policy, v.reason) for v in bad],
        columns=["share", "recipient", "policy", "reason"],
    )
    _print(frame, "no grant violates a product's policies")
    return 3 if bad else 0


def _trends(args: argparse.Namespace) -> int:
    _print(_mesh(args).quality_trends(args.product), "fewer than two measurements yet")
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mesh`` and its subcommands to the ``sharelab`` parser."""
    mesh = subparsers.add_parser(
        "mesh",
        help="data mesh: report, products, domains, compliance check, lineage, violations, trends",
        description="Inspect the data mesh of the lab home (build it with helpers.mesh.Mesh).",
    )
    sub = mesh.add_subparsers(dest="mesh_command", metavar="SUBCOMMAND")

    def _help(args: argparse.Namespace) -> int:
        mesh.print_help()
        return 2

    mesh.set_defaults(func=_help)

    p = sub.add_parser("report", help="write the HTML mesh report")
    p.add_argument("--out", required=True, metavar="FILE", help="HTML file to write")
    p.add_argument("--now", metavar="ISO", help="clock for freshness (default: now)")
    p.add_argument(
        "--no-measure",
        action="store_true",
        help="do not store the measurements made for the report",
    )
    p.set_defaults(func=_report)

    p = sub.add_parser("products", help="list or search data products")
    p.add_argument("text", nargs="?", help="free text over names, descriptions and column names")
    p.add_argument("--domain")
    p.add_argument("--owner")
    p.add_argument("--tag")
    p.set_defaults(func=_products)

    p = sub.add_parser("domains", help="list domains")
    p.set_defaults(func=_domains)

    p = sub.add_parser(
        "check",
        help="measure a product and evaluate its policies (exit 3 when a mandatory one fails)",
    )
    p.add_argument("product")
    p.add_argument("--now", metavar="ISO", help="clock for freshness (default: now)")
    p.add_argument("--no-record", action="store_true", help="do not store the measurement")
    p.set_defaults(func=_check)

    p = sub.add_parser(
        "lineage", help="impact of a change to a catalog table (catalog.schema.table)"
    )
    p.add_argument("table")
    p.set_defaults(func=_lineage)

    p = sub.add_parser(
        "violations",
        help="grants that a product's access or pii policy no longer allows (exit 3 when any)",
    )
    p.add_argument("product", nargs="?", help="one product (default: every product)")
    p.set_defaults(func=_violations)

    p = sub.add_parser("trends", help="quality trends with a verdict (improving/degrading/stable)")
    p.add_argument("product", nargs="?", help="one product (default: every product)")
    p.set_defaults(func=_trends)
