"""The workshop roster: one recipient per attendee, granted the workshop's shares, with a one-time join link.

:func:`add_attendees` is what ``sharelab workshop add NAME... | --csv FILE`` runs, in one catalog transaction
per attendee (recipient, grants, roster row and a fresh activation code together). Adding an attendee again
is allowed: the recipient and grants stay, a new join link replaces an unused one (a lost link is re-issued
this way).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers.catalog import Catalog, validate_name
from helpers.catalog.workshop import WorkshopStore
from helpers.exceptions import InvalidArgumentError, NotFoundError
from helpers.home import LabHome

__all__ = ["Join", "add_attendees", "join_endpoint", "read_roster_csv"]


@dataclass(frozen=True)
class Join:
    """An attendee and their join link (the recipient's one-time activation link)."""

    name: str
    link: str
    shares: tuple[str, ...]


def read_roster_csv(path: str | os.PathLike[str]) -> list[str]:
    """Attendee names from a CSV: a ``name`` column (header), or the first column without a header."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise NotFoundError(f"cannot read the roster {p}: {exc.strerror}") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise InvalidArgumentError(f"the roster {p} holds no names")
    header = [c.strip().lower() for c in rows[0]]
    col = header.index("name") if "name" in header else 0
    body = rows[1:] if "name" in header else rows
    names = [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    if not names:
        raise InvalidArgumentError(f"the roster {p} holds no names under its name column")
    return names


def join_endpoint(home: LabHome, endpoint: str | None = None) -> str:
    """The sharing endpoint join links point at: ``endpoint``, else the running server's."""
    if endpoint:
        return endpoint.rstrip("/") + "/"
    state = home.server_state()
    if not state or not state.get("endpoint"):
        raise InvalidArgumentError(
            "no server runs for this lab home, so join links have no address: start it first "
            "(./run-demo.sh --lan, or sharelab start --tls --host 0.0.0.0 --public-url https://ADDR:PORT)"
            " or pass --endpoint URL"
        )
    return str(state["endpoint"])


def add_attendees(
    catalog: Catalog,
    home: LabHome,
    names: Iterable[str],
    *,
    shares: Sequence[str] | None = None,
    endpoint: str | None = None,
) -> list[Join]:
    """Create (or keep) one recipient per name, grant it ``shares`` (default: every share), put it on the
    roster and make a new join link.

    :raises InvalidArgumentError: a bad name, a duplicate, no share to grant, no endpoint.
    :raises NotFoundError: an unknown share.
    """
    clean = [validate_name(n.strip(), "attendee") for n in names]
    if not clean:
        raise InvalidArgumentError("give at least one attendee name (or --csv FILE)")
    lowered = [n.lower() for n in clean]
    dupes = sorted({n for n in lowered if lowered.count(n) > 1})
    if dupes:
        raise InvalidArgumentError(f"the roster names these twice: {', '.join(dupes)}")
    share_names = list(shares) if shares else [s.name for s in catalog.list_shares()]
    if not share_names:
        raise InvalidArgumentError(
            "there is no share to grant yet: create one first (notebook 02, or CREATE SHARE ...)"
        )
    for s in share_names:
        catalog.get_share(s)  # NotFoundError before anything is written
    base = join_endpoint(home, endpoint).rstrip("/")
    store = WorkshopStore(catalog)
    joins = []
    for name in clean:
        with catalog.db.transaction():
            catalog.create_recipient(name, "workshop attendee", if_not_exists=True)
            for s in share_names:
                if not catalog.has_grant(s, name):
                    catalog.grant(s, name)
            store.add([name])
            code = catalog.create_activation(name)
        joins.append(Join(name, f"{base}/activation/{code}", tuple(share_names)))
    return joins
