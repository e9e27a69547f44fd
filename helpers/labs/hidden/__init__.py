"""Instructor-only checks, run by ``sharelab labs grade`` against each learner's lab home after the learner's
notebook ran. They are never imported by a lab notebook, so a learner cannot see (or print) them; the
tests check that no notebook of ``labs/`` names this package.

Each check reads the real state the learner left (catalog, grants, governance) and raises
:class:`~helpers.labs.core.CheckFailed` with a message for the feedback report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helpers.labs.core import FAILED, PASSED, CheckFailed, expect


@dataclass(frozen=True)
class HiddenCheck:
    lab: str
    name: str
    title: str
    points: float
    run: Callable[[str | os.PathLike[str]], None]


def _provider_no_oversharing(home: str | os.PathLike[str]) -> None:
    from helpers.catalog import open_catalog
    from helpers.labs import provider_lab as p

    catalog = open_catalog(home)
    if not any(s.name.lower() == p.SHARE for s in catalog.list_shares()):
        raise CheckFailed(f"there is no share {p.SHARE} to look at")
    grantees = {g.recipient.lower() for g in catalog.grants_on_share(p.SHARE)}
    extra = sorted(grantees - {p.RECIPIENT, p.OTHER_READER})
    expect(not extra, f"the share is also granted to {extra}, whom no task asked for")


def _provider_real_comment(home: str | os.PathLike[str]) -> None:
    from helpers.catalog import open_catalog
    from helpers.labs import provider_lab as p

    comment = (open_catalog(home).get_share(p.SHARE).comment or "").strip()
    expect(
        len(comment.strip(".' ")) >= 5,
        f"the share's comment {comment!r} tells a recipient nothing; describe what it holds",
    )


def _mesh_governance_intact(home: str | os.PathLike[str]) -> None:
    from helpers.labs import mesh_lab as m
    from helpers.mesh import DEFAULT_POLICIES, Mesh

    mesh = Mesh(home)
    names = {p.name.lower(): p for p in mesh.list_policies()}
    for policy in DEFAULT_POLICIES:
        current = names.get(policy.name.lower())
        expect(current is not None, f"governance policy {policy.name!r} was removed")
        expect(
            current.rule == policy.rule and current.enforcement == policy.enforcement,  # type: ignore[union-attr]
            f"governance policy {policy.name!r} was weakened (rule or enforcement changed)",
        )
    tags = mesh.column_tags(m.CUSTOMERS)
    expect(
        len(tags) > 0 and (tags["tag"].str.lower() == "pii").any(),
        f"the pii tag on {m.CUSTOMERS} was removed after task m5",
    )


CHECKS: tuple[HiddenCheck, ...] = (
    HiddenCheck("provider", "h1", "No one else holds the share", 1.0, _provider_no_oversharing),
    HiddenCheck("provider", "h2", "The share's comment describes it", 1.0, _provider_real_comment),
    HiddenCheck(
        "mesh", "h1", "Governance left as the platform team set it", 1.0, _mesh_governance_intact
    ),
)


def run_hidden(lab: str, home: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The hidden checks of ``lab`` run against ``home``, as result records (task ``hidden:<name>``)."""
    records = []
    for check in (c for c in CHECKS if c.lab == lab):
        try:
            check.run(home)
            status, message = PASSED, ""
        except CheckFailed as exc:
            status, message = FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - a learner's broken state reads as a failure
            status, message = FAILED, f"{type(exc).__name__}: {exc}"
        records.append(
            {
                "lab": lab,
                "task": f"hidden:{check.name}",
                "title": check.title,
                "status": status,
                "message": message,
                "hints": 0,
                "points": check.points if status == PASSED else 0.0,
                "max_points": check.points,
            }
        )
    return records
