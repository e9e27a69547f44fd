"""Workshop state in the catalog: the roster, the attendees' lab progress reports, and the board's numbers.

The tables ``workshop_roster`` and ``workshop_progress`` belong to the component ``workshop`` of the
catalog's file (own migrations, :data:`MIGRATIONS`, applied when a :class:`WorkshopStore` is opened).

- **roster**: the attendees of a workshop (each one a recipient of the catalog);
- **progress**: the latest result per (attendee, lab, task), as reported by the attendee's own lab checks
  (``POST /workshop/progress`` with their bearer token, or collected from their home in the hub route);
- :meth:`WorkshopStore.board`: one :class:`BoardRow` per attendee from the catalog's own records: profile
  activated or not, last request, tables read, errors seen (401/403/404) and progress per task. A 401
  carries no recipient (the token was not recognised), so it is counted for the attendee whose last
  authenticated request came from the same client address.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from helpers.catalog import clock
from helpers.catalog.catalog import Catalog
from helpers.catalog.names import validate_name
from helpers.exceptions import InvalidArgumentError

__all__ = ["COMPONENT", "MIGRATIONS", "STATUSES", "BoardRow", "WorkshopStore"]

COMPONENT = "workshop"
#: What a lab check can say about a task (:mod:`helpers.labs.core`).
STATUSES = ("passed", "failed", "not attempted")
MAX_REPORT_ITEMS = 200
MAX_LABEL = 80
READ_ACTIONS = ("queryTable", "queryTableChanges")


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS workshop_roster (
            name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE, added_at REAL NOT NULL,
            display_name TEXT)"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS workshop_progress (
            recipient TEXT NOT NULL COLLATE NOCASE, lab TEXT NOT NULL, task TEXT NOT NULL,
            status TEXT NOT NULL, message TEXT, reported_at REAL NOT NULL, source TEXT NOT NULL,
            PRIMARY KEY (recipient, lab, task))"""
    )


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _create_v1}


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), tz=UTC)


@dataclass(frozen=True)
class BoardRow:
    """One attendee on the instructor's board."""

    name: str
    activated: bool
    activated_at: datetime | None
    last_request: datetime | None
    requests: int
    tables_read: tuple[str, ...]
    errors: dict[int, int]
    progress: dict[str, dict[str, str]] = field(default_factory=dict)  # lab -> task -> status

    @property
    def passed(self) -> int:
        return sum(s == "passed" for tasks in self.progress.values() for s in tasks.values())

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "activated": self.activated,
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
            "last_request": self.last_request.isoformat() if self.last_request else None,
            "requests": self.requests,
            "tables_read": list(self.tables_read),
            "errors": {str(k): v for k, v in self.errors.items()},
            "progress": self.progress,
            "passed": self.passed,
        }


def _label(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL:
        raise InvalidArgumentError(
            f"{what} must be a non-empty string of at most {MAX_LABEL} chars"
        )
    return value.strip()


class WorkshopStore:
    """The workshop tables of ``catalog`` (created on first use)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.db = catalog.db
        self.db.ensure_schema(COMPONENT, MIGRATIONS)

    # -- roster ----------------------------------------------------------------------------------
    def add(self, names: Iterable[str]) -> list[str]:
        """Put ``names`` on the roster (existing ones stay); they must be recipients already."""
        clean = [validate_name(n, "attendee") for n in names]
        for name in clean:
            self.catalog.get_recipient(name)  # NotFoundError for a stranger

        def body(conn: sqlite3.Connection) -> list[str]:
            now = clock.now()
            for name in clean:
                conn.execute(
                    "INSERT INTO workshop_roster (name, added_at) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (name, now),
                )
            return clean

        return self.db.write(body)

    def roster(self) -> list[str]:
        """The attendees, in the order they were added."""
        return self.db.read(
            lambda conn: [
                str(r[0])
                for r in conn.execute("SELECT name FROM workshop_roster ORDER BY added_at, name")
            ]
        )

    def remove(self, name: str) -> bool:
        """Take ``name`` off the roster (the recipient stays); whether it was on it."""
        return self.db.write(
            lambda conn: (
                conn.execute("DELETE FROM workshop_roster WHERE name = ?", (name,)).rowcount > 0
            )
        )

    # -- progress --------------------------------------------------------------------------------
    def record_progress(
        self, recipient: str, lab: str, results: Iterable[object], *, source: str = "report"
    ) -> int:
        """Keep the latest status per task of ``lab`` for ``recipient``; returns how many were stored.

        :param results: items ``{"task": "r1", "status": "passed", "message": "..."}``.
        :raises InvalidArgumentError: a malformed item (nothing is stored then).
        """
        lab = _label(lab, "lab")
        rows = []
        for item in list(results)[: MAX_REPORT_ITEMS + 1]:
            if not isinstance(item, dict):
                raise InvalidArgumentError("each result must be an object with task and status")
            status = item.get("status")
            if status not in STATUSES:
                raise InvalidArgumentError(f"status must be one of {', '.join(STATUSES)}")
            message = item.get("message")
            message = str(message)[:500] if message else None
            rows.append((_label(item.get("task"), "task"), str(status), message))
        if len(rows) > MAX_REPORT_ITEMS:
            raise InvalidArgumentError(f"at most {MAX_REPORT_ITEMS} results per report")

        def body(conn: sqlite3.Connection) -> int:
            now = clock.now()
            for task, status, message in rows:
                conn.execute(
                    "INSERT INTO workshop_progress VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (recipient, lab, task) DO UPDATE SET status = excluded.status, "
                    "message = excluded.message, reported_at = excluded.reported_at, "
                    "source = excluded.source",
                    (recipient, lab, task, status, message, now, source),
                )
            return len(rows)

        return self.db.write(body)

    def progress(self) -> dict[str, dict[str, dict[str, str]]]:
        """recipient -> lab -> task -> status (the latest report of each task)."""
        out: dict[str, dict[str, dict[str, str]]] = {}

        def body(conn: sqlite3.Connection) -> None:
            for rcp, lab, task, status in conn.execute(
                "SELECT recipient, lab, task, status FROM workshop_progress ORDER BY lab, task"
            ):
                out.setdefault(str(rcp).lower(), {}).setdefault(str(lab), {})[str(task)] = str(
                    status
                )

        self.db.read(body)
        return out

    # -- the board -------------------------------------------------------------------------------
    def board(self) -> list[BoardRow]:
        """One row per attendee on the roster (every recipient when the roster is empty)."""
        names = self.roster() or [r.name for r in self.catalog.list_recipients()]
        progress = self.progress()
        stats = self.db.read(_audit_stats)
        activated = self.db.read(_activations)
        rows = []
        for name in names:
            key = name.lower()
            s = stats.get(key, _Stats())
            when, live = activated.get(key, (None, False))
            errors = {code: s.errors.get(code, 0) for code in (401, 403, 404)}
            rows.append(
                BoardRow(
                    name=name,
                    activated=live,
                    activated_at=_ts(when),
                    last_request=_ts(s.last),
                    requests=s.requests,
                    tables_read=tuple(sorted(s.tables)),
                    errors=errors,
                    progress=progress.get(key, {}),
                )
            )
        return rows


@dataclass
class _Stats:
    requests: int = 0
    last: float | None = None
    tables: set[str] = field(default_factory=set)
    errors: dict[int, int] = field(default_factory=dict)
    address: str | None = None


def _audit_stats(conn: sqlite3.Connection) -> dict[str, _Stats]:
    stats: dict[str, _Stats] = {}
    by_address: dict[str, str] = {}
    anonymous_401: list[str] = []
    for rcp, share, schema, table, action, status, address, when in conn.execute(
        "SELECT recipient, share, schema_name, table_name, action, status_code, client_address, "
        "event_time FROM audit WHERE action NOT IN ('activate', 'downloadFile') OR status_code >= 400 "
        "ORDER BY event_time"
    ):
        if rcp is None:
            if status == 401 and address:
                anonymous_401.append(str(address))
            continue
        s = stats.setdefault(str(rcp).lower(), _Stats())
        s.requests += 1
        s.last = float(when)
        if status and int(status) >= 400:
            s.errors[int(status)] = s.errors.get(int(status), 0) + 1
        elif action in READ_ACTIONS and table:
            s.tables.add(f"{share}.{schema}.{table}")
        if address and status and int(status) < 400:
            by_address[str(address)] = str(rcp).lower()
    for address in anonymous_401:
        owner = by_address.get(address)
        if owner is not None:
            stats[owner].errors[401] = stats[owner].errors.get(401, 0) + 1
    return stats


def _activations(conn: sqlite3.Connection) -> dict[str, tuple[float | None, bool]]:
    """recipient -> (when the profile was first activated or issued, whether a live token exists)."""
    now = clock.now()
    out: dict[str, tuple[float | None, bool]] = {}
    for name, first, live in conn.execute(
        "SELECT r.name, MIN(t.created_at), "
        "SUM(CASE WHEN t.revoked_at IS NULL AND t.expires_at > ? THEN 1 ELSE 0 END) "
        "FROM recipients r JOIN tokens t ON t.recipient_id = r.id GROUP BY r.name",
        (now,),
    ):
        out[str(name).lower()] = (float(first) if first is not None else None, bool(live))
    return out
