"""The catalog's audit log: the requests the sharing server saw (``system.access.audit``)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from helpers.catalog import clock
from helpers.catalog.db import Database
from helpers.catalog.models import AUDIT_COLUMNS, AuditEvent
from helpers.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AuditMixin"]

_COLUMNS = (
    "event_time, recipient, share, schema_name, table_name, action, version, start_version, "
    "end_version, num_files, has_predicate_hints, has_limit_hint, status_code, user_agent, "
    "client_address, duration_ms, response_format"
)
_CHUNK = 500
"""Rows per INSERT statement: one parameter per column (17), far below SQLite's 32,766 and PostgreSQL's 65,535."""


@functools.lru_cache(maxsize=16)
def _insert_sql(n: int) -> str:
    row = "(" + ", ".join(["?"] * _COLUMNS.count(",") + ["?"]) + ")"
    return f"INSERT INTO audit ({_COLUMNS}) VALUES " + ", ".join([row] * n)


class AuditMixin:
    """Audit events of :class:`~helpers.catalog.Catalog`."""

    db: Database

    # -- audit -----------------------------------------------------------------------------------

    def record_audit(self, events: Iterable[AuditEvent]) -> int:
        """Append audit events in one transaction; returns how many were written."""
        rows = []
        for ev in events:
            if not isinstance(ev, AuditEvent):
                raise InvalidArgumentError(
                    f"audit events must be AuditEvent objects, got {type(ev).__name__}"
                )
            rows.append(
                (
                    clock.to_epoch(ev.event_time) if ev.event_time is not None else clock.now(),
                    ev.recipient,
                    ev.share,
                    ev.schema,
                    ev.table,
                    ev.action,
                    ev.version,
                    ev.start_version,
                    ev.end_version,
                    ev.num_files,
                    int(bool(ev.has_predicate_hints)),
                    int(bool(ev.has_limit_hint)),
                    ev.status_code,
                    ev.user_agent,
                    ev.client_address,
                    ev.duration_ms,
                    ev.response_format,
                )
            )
        if not rows:
            return 0

        def body(conn: sqlite3.Connection) -> int:
            # one multi-row statement per chunk: a fraction of executemany's per-row cost (one
            # statement step, one release of the GIL, where the server's writer thread shares it)
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                conn.execute(_insert_sql(len(chunk)), [v for row in chunk for v in row])
            return len(rows)

        return self.db.write(body)

    def audit_events(self, *, limit: int | None = None) -> list[AuditEvent]:
        """Audit events, oldest first (the last ``limit`` when given)."""
        sql = "SELECT * FROM audit ORDER BY event_time, seq"
        if limit is not None:
            sql = f"SELECT * FROM (SELECT * FROM audit ORDER BY event_time DESC, seq DESC LIMIT {int(limit)}) ORDER BY event_time, seq"
        return self.db.read(lambda conn: [AuditEvent.from_row(r) for r in conn.execute(sql)])

    def audit_frame(self) -> pd.DataFrame:
        """The audit log as a DataFrame with :data:`AUDIT_COLUMNS`; ``event_time`` is tz-aware UTC."""
        import pandas as pd

        rows = self.db.read(
            lambda conn: conn.execute(
                "SELECT event_time, recipient, share, schema_name, table_name, action, version, start_version, "
                "end_version, num_files, has_predicate_hints, has_limit_hint, status_code, user_agent, "
                "client_address, duration_ms, response_format FROM audit ORDER BY event_time, seq"
            ).fetchall()
        )
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(AUDIT_COLUMNS))
        # whole microseconds: float seconds would print as ...803936958 nanoseconds
        micros = (frame["event_time"].astype("float64") * 1_000_000).round().astype("int64")
        frame["event_time"] = pd.to_datetime(micros, unit="us", utc=True)
        for col in ("version", "start_version", "end_version", "num_files", "status_code"):
            frame[col] = frame[col].astype("Int64")
        for col in ("has_predicate_hints", "has_limit_hint"):
            frame[col] = frame[col].astype("bool")
        frame["duration_ms"] = frame["duration_ms"].astype("float64")
        for col in (
            "recipient",
            "share",
            "schema",
            "table",
            "action",
            "user_agent",
            "client_address",
            "response_format",
        ):
            frame[col] = frame[col].astype("object")
        return frame
