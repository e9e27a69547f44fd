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


def _recipient_read_only_what_was_shared(home: str | os.PathLike[str]) -> None:
    audit = _settled_audit(home)
    mine = audit[audit["recipient"].str.lower() == "lab_sales_analyst"]
    expect(len(mine) > 0, "the server logged no request of your profile: was the lab run?")
    refused = mine[mine["status_code"].fillna(200) >= 400]
    expect(
        refused.empty,
        f"{len(refused)} of your requests were refused ({', '.join(sorted(set(refused['action'])))}): "
        "a recipient reads what its profile lists (SharingClient(profile).list_all_tables()), "
        "not names it guesses",
    )


def _settled_audit(home: str | os.PathLike[str], wait: float = 3.0) -> Any:
    """The audit once the server's batched writer has caught up (no new row for a moment)."""
    import time

    from helpers.catalog import open_catalog

    catalog = open_catalog(home)
    deadline = time.monotonic() + wait
    frame = catalog.audit_frame()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = catalog.audit_frame()
        if len(again) == len(frame):
            return again
        frame = again
    return frame


def _cdf_copy_is_own(home: str | os.PathLike[str]) -> None:
    """The SCD1 copy is a Delta table of the learner's (not the provider's table, nor a view's cache)
    whose history holds a merge, and which equals the provider's current table."""
    from pathlib import Path

    from deltalake import DeltaTable

    from helpers.catalog import open_catalog
    from helpers.labs import cdf_lab as c

    catalog = open_catalog(home)
    registered = {Path(t.location).resolve() for t in catalog.list_tables()}
    provider = DeltaTable(catalog.get_table(c.TABLE).location).to_pandas()
    root = Path(home)
    own = [
        log.parent
        for log in root.rglob("_delta_log")
        if log.parent.resolve() not in registered
        and not {"data", "managed", "views"} & set(log.relative_to(root).parts[:1])
    ]
    merged = [
        p
        for p in own
        if any(h.get("operation") == "MERGE" for h in DeltaTable(str(p)).history())
        and len(DeltaTable(str(p)).to_pandas()) == len(provider)
    ]
    expect(
        bool(merged),
        "no Delta table of your own (outside the provider's tables) was kept up to date with a "
        "merge: the copy must be yours, maintained from the change feed, not the provider's table",
    )


def _capstone_contacts_not_shared(home: str | os.PathLike[str]) -> None:
    from helpers.catalog import open_catalog
    from helpers.labs import capstone_lab as k

    catalog = open_catalog(home)
    if not any(s.name.lower() == k.SHARE for s in catalog.list_shares()):
        raise CheckFailed(f"there is no share {k.SHARE} to look at")
    location = catalog.get_table(k.CONTACTS).location
    leaks = [
        s.name
        for s in catalog.list_shares()
        if any(t.location == location for t in catalog.shared_tables(s.name))
    ]
    expect(
        not leaks,
        f"{k.CONTACTS} itself (every region, unmasked e-mails) is in share(s) {leaks}: share the "
        "view, never the table behind it",
    )


def _capstone_no_oversharing(home: str | os.PathLike[str]) -> None:
    from helpers.catalog import open_catalog
    from helpers.labs import capstone_lab as k

    catalog = open_catalog(home)
    if not any(s.name.lower() == k.SHARE for s in catalog.list_shares()):
        raise CheckFailed(f"there is no share {k.SHARE} to look at")
    extra = sorted(
        {g.recipient.lower() for g in catalog.grants_on_share(k.SHARE)} - set(k.PARTNERS)
    )
    expect(not extra, f"{k.SHARE} is also granted to {extra}, whom no task asked for")


CHECKS: tuple[HiddenCheck, ...] = (
    HiddenCheck("provider", "h1", "No one else holds the share", 1.0, _provider_no_oversharing),
    HiddenCheck("provider", "h2", "The share's comment describes it", 1.0, _provider_real_comment),
    HiddenCheck(
        "recipient",
        "h1",
        "Only what the profile lists was requested",
        1.0,
        _recipient_read_only_what_was_shared,
    ),
    HiddenCheck(
        "cdf", "h1", "The copy is the learner's own, kept by a merge", 1.0, _cdf_copy_is_own
    ),
    HiddenCheck(
        "mesh", "h1", "Governance left as the platform team set it", 1.0, _mesh_governance_intact
    ),
    HiddenCheck(
        "capstone",
        "h1",
        "The personal-data table stays behind its view",
        1.0,
        _capstone_contacts_not_shared,
    ),
    HiddenCheck(
        "capstone",
        "h2",
        "Only the two partners hold the partner share",
        1.0,
        _capstone_no_oversharing,
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
