"""The audit trail: what a handler learned about a request, and the writer of audit rows.

Durability: a request's row is durable *before* its response is complete (for a stream: before its last
chunk), so a client never holds a response whose row could be lost (``kill -9`` included): with a journal
(the server's case) the row is appended to this process's journal file first
(:mod:`helpers.server.audit_journal`) and committed to the catalog by one thread in group commits a few
milliseconds later; a server starting replays the journals of killed ones. Without a journal,
:meth:`AuditWriter.record` waits for the group commit of the row.

Repeated failures: from one client address, the first :data:`FAILURES_LOGGED_PER_WINDOW` failed
authentications (401) that name no recipient, throttled requests (429), refused activation codes and
refused file URLs of a
:data:`FAILURE_WINDOW_SECONDS` window get a row each; the rest of that window are counted in one row per
(address, action, window) of the table ``audit_failure_summary`` (:func:`failure_summary`), so a flood
of failures cannot grow the audit by more than a few rows a minute per address. The window and its count
live in the catalog (``audit_failure_window``, decided in the commit's transaction), so the workers of a
server share them: failures spread over N workers are logged and counted as by one.

Retention: rows older than :attr:`ServerLimits.audit_retention_days` (``SHARELAB_AUDIT_RETENTION_DAYS``,
default 90, 0 keeps everything) are deleted at start-up and then hourly, from both tables.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request

from helpers.catalog import AuditEvent, Catalog, clock
from helpers.server.audit_journal import AuditJournal

__all__ = [
    "FAILURES_LOGGED_PER_WINDOW",
    "FAILURE_WINDOW_SECONDS",
    "AuditInfo",
    "AuditWriter",
    "FailureWindows",
    "audit_event",
    "event_of",
    "ensure_audit_schema",
    "failure_summary",
]

log = logging.getLogger("sharelab.server")

FAILURE_WINDOW_SECONDS = 60.0
FAILURES_LOGGED_PER_WINDOW = 5
_COMPONENT = "server_audit"
_PRUNE_EVERY_SECONDS = 3600.0


@dataclass
class AuditInfo:
    """What a handler learned about a request, for the audit row."""

    action: str
    recipient: str | None = None
    share: str | None = None
    schema: str | None = None
    table: str | None = None
    version: int | None = None
    start_version: int | None = None
    end_version: int | None = None
    num_files: int | None = None
    has_predicate_hints: bool = False
    has_limit_hint: bool = False
    response_format: str | None = None
    failed: bool = False
    """A failure for the per-address aggregation even though its status is not 401/403/429."""


def audit_event(request: Request, info: AuditInfo, status: int, started: float) -> AuditEvent:
    """The audit row of a finished request (``started`` is its :func:`time.perf_counter`)."""
    client = request.client
    return event_of(
        info, status, started, request.headers.get("user-agent"), client.host if client else None
    )


def event_of(
    info: AuditInfo, status: int, started: float, user_agent: str | None, address: str | None
) -> AuditEvent:
    """The audit row of a request answered below the ASGI layer (:mod:`helpers.server.direct`)."""
    return AuditEvent(
        action=info.action,
        event_time=datetime.now(UTC),
        recipient=info.recipient,
        share=info.share,
        schema=info.schema,
        table=info.table,
        version=info.version,
        start_version=info.start_version,
        end_version=info.end_version,
        num_files=info.num_files,
        has_predicate_hints=info.has_predicate_hints,
        has_limit_hint=info.has_limit_hint,
        status_code=status,
        user_agent=user_agent,
        client_address=address,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        response_format=info.response_format,
    )


# ======================================================================================== schema
def _migrate_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE audit_failure_summary ("
        " client_address TEXT NOT NULL,"
        " action TEXT NOT NULL,"
        " window_start REAL NOT NULL,"
        " last_time REAL NOT NULL,"
        " failures INTEGER NOT NULL,"
        " status_code INTEGER,"
        " recipient TEXT,"
        " PRIMARY KEY (client_address, action, window_start))"
    )
    conn.execute("CREATE INDEX audit_failure_summary_time ON audit_failure_summary (last_time)")


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """The failure windows shared by every process (see :class:`FailureWindows`)."""
    conn.execute(
        "CREATE TABLE audit_failure_window ("
        " client_address TEXT NOT NULL,"
        " action TEXT NOT NULL,"
        " window_start REAL NOT NULL,"
        " seen INTEGER NOT NULL,"
        " PRIMARY KEY (client_address, action))"
    )
    conn.execute("CREATE INDEX audit_failure_window_start ON audit_failure_window (window_start)")


def ensure_audit_schema(catalog: Catalog) -> None:
    """Create the server's own audit table (component ``server_audit``) when missing."""
    catalog.db.ensure_schema(_COMPONENT, {1: _migrate_to_1, 2: _migrate_to_2})


def failure_summary(catalog: Catalog) -> list[dict[str, Any]]:
    """The aggregated failures, oldest window first: address, action, window start/last time
    (epoch seconds), failures counted beyond the individually logged ones, last status, recipient."""
    ensure_audit_schema(catalog)
    rows = catalog.db.read(
        lambda conn: conn.execute(
            "SELECT client_address, action, window_start, last_time, failures, status_code, recipient "
            "FROM audit_failure_summary ORDER BY window_start, client_address, action"
        ).fetchall()
    )
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class _Count:
    """One failure counted in ``audit_failure_summary`` instead of its own audit row (the journal of a
    server before the counting moved to the commit may still hold such lines)."""

    address: str
    action: str
    window_start: float
    when: float
    status: int
    recipient: str | None


class FailureWindows:
    """Decides, per client address and action, which failures get their own audit row.

    The decision is taken by the writer thread in the transaction that commits the failure, from the
    table ``audit_failure_window`` (one row per address and action: the window's start and the failures
    seen in it), so every worker of a server (and every replica on one PostgreSQL catalog) counts in the
    same window: the first ``per_window`` failures of a window get their own row, the rest are counted in
    one ``audit_failure_summary`` row, whichever process answered them. Successful requests never touch it.

    :param per_window: failures logged individually per window; the rest are counted.
    :param window: window length in seconds.
    """

    def __init__(
        self, per_window: int = FAILURES_LOGGED_PER_WINDOW, window: float = FAILURE_WINDOW_SECONDS
    ) -> None:
        self.per_window = per_window
        self.window = window
        self._next_cleanup = 0.0

    def classify(self, conn: sqlite3.Connection, event: AuditEvent) -> _Count | None:
        """None: log ``event`` as a row; else the summary increment that replaces it (in ``conn``'s
        write transaction).

        A failure that names its recipient (a known but expired, rotated or revoked token) always gets
        its row: it answers "who tried a revoked token?" (and the throttle bounds how many there are).
        """
        if event.recipient is not None:
            return None
        when = clock.to_epoch(event.event_time) or time.time()
        address = event.client_address or ""
        row = conn.execute(
            "SELECT window_start, seen FROM audit_failure_window "
            "WHERE client_address = ? AND action = ?",
            (address, event.action),
        ).fetchone()
        start, seen = (when, 0) if row is None else (float(row[0]), int(row[1]))
        if when - start >= self.window:
            start, seen = when, 0
        conn.execute(
            "INSERT INTO audit_failure_window (client_address, action, window_start, seen) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (client_address, action) DO UPDATE SET "
            "window_start = excluded.window_start, seen = excluded.seen",
            (address, event.action, start, seen + 1),
        )
        if seen < self.per_window:
            return None
        return _Count(address, event.action, start, when, event.status_code or 0, None)

    def cleanup(self, conn: sqlite3.Connection) -> None:
        """Forget closed windows (at most once a window length)."""
        now = time.time()
        if now < self._next_cleanup:
            return
        self._next_cleanup = now + self.window
        conn.execute(
            "DELETE FROM audit_failure_window WHERE window_start < ?", (now - 2 * self.window,)
        )


# ======================================================================================== writer
_Item = tuple[str, AuditEvent | _Count, Callable[[], None] | None, int | None]
"""(kind "event" | "failure" | "count", row or count, called once committed, journal sequence number)."""


def count_from_json(data: dict[str, Any]) -> _Count:
    """A summary increment read back from the journal."""
    return _Count(**data)


class AuditWriter:
    """Writes audit rows on one thread in group commits; :meth:`record` waits for its commit.

    :param catalog: the catalog whose ``audit`` table receives the rows.
    :param max_batch: most rows per commit.
    :param retention_days: rows older than this are deleted (0 keeps them all).
    """

    def __init__(
        self,
        catalog: Catalog,
        max_batch: int = 1000,
        retention_days: float = 0,
        journal_dir: Path | None = None,
    ) -> None:
        self._catalog = catalog
        self._journal_dir = journal_dir
        self._journal: AuditJournal | None = None
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._max = max_batch
        self._retention = retention_days
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0
        self.failures = FailureWindows()
        ensure_audit_schema(catalog)

    def start(self) -> None:
        """Open this process's journal (replaying those of killed servers) and start the writer."""
        if self._journal is None and self._journal_dir is not None:
            self._journal = AuditJournal(self._journal_dir, self._catalog)
            replayed = self._journal.replay(self._insert)
            if replayed:
                log.info(
                    "audit: %d rows of an interrupted server recovered from its journal", replayed
                )
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sharelab-audit", daemon=True)
            self._thread.start()

    @property
    def durable_on_put(self) -> bool:
        """Whether a row is durable once :meth:`put` returns (journaled): then no commit is awaited."""
        return self._journal is not None

    def put(self, event: AuditEvent, done: Callable[[], None] | None = None) -> None:
        """Queue ``event``; ``done()`` is called (on the writer thread) once it is committed."""
        self._enqueue("event", event, done)

    def _enqueue(self, kind: str, event: AuditEvent, done: Callable[[], None] | None) -> None:
        journal = self._journal
        if journal is None:
            self._queue.put((kind, event, done, None))
            return
        journal.append(kind, event, lambda seq: self._queue.put((kind, event, done, seq)))

    def put_failure(self, event: AuditEvent, done: Callable[[], None] | None = None) -> None:
        """Queue a failure: committed as its own row, or as a count in the summary when its address
        repeats itself (decided at the commit, across processes: :class:`FailureWindows`)."""
        self._enqueue("failure", event, done)

    def submit(self, event: AuditEvent, *, failure: bool = False) -> Any:
        """Queue ``event`` now; returns an asyncio future resolved once it is committed (call on the
        event loop). A stream submits its row when it starts and waits for it before it ends, so the
        commit overlaps with producing the body."""
        import asyncio

        loop = asyncio.get_running_loop()
        committed = loop.create_future()
        if self._thread is None or self._journal is not None:
            # journaled: durable once appended (the commit follows); not started: tests without lifespan
            (self.put_failure if failure else self.put)(event)
            committed.set_result(None)
            return committed

        def done() -> None:
            loop.call_soon_threadsafe(_resolve, committed)

        (self.put_failure if failure else self.put)(event, done)
        return committed

    @staticmethod
    async def wait(committed: Any, timeout: float = 5.0) -> None:
        """Wait for a future of :meth:`submit` (at most ``timeout`` seconds, then go on)."""
        import asyncio

        try:
            await asyncio.wait_for(asyncio.shield(committed), timeout)
        except TimeoutError:
            log.warning("audit commit took more than %.0f s; answering anyway", timeout)

    async def record(
        self, event: AuditEvent, *, failure: bool = False, timeout: float = 5.0
    ) -> None:
        """Queue ``event`` and wait until it is committed (at most ``timeout`` seconds, then go on)."""
        await self.wait(self.submit(event, failure=failure), timeout)

    def _run(self) -> None:
        while True:
            self._prune_if_due()
            try:
                item = self._queue.get(timeout=60.0)
            except queue.Empty:
                continue
            if item is None:
                break
            batch = [item]
            stopping = False
            if self._journal is not None:  # rows are durable in the journal: let a batch gather
                time.sleep(0.02)
            while len(batch) < self._max:  # group commit: everything that queued meanwhile
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._write(batch)
            if stopping:
                break
        rest: list[_Item] = []
        while True:  # drain whatever arrived after the stop marker
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is not None:
                rest.append(nxt)
        self._write(rest)

    def _write(self, batch: list[_Item]) -> None:
        if not batch:
            return
        seqs = [seq for _, _, _, seq in batch if seq is not None]
        try:
            with self._catalog.db.transaction() as conn:
                self._insert([(kind, o) for kind, o, _, _ in batch], conn)
                if seqs and self._journal is not None:
                    self._journal.mark(conn, max(seqs))
            if seqs and self._journal is not None:
                self._journal.committed(max(seqs))
        except Exception:  # an audit failure must not take the server down (the journal keeps them)
            log.exception("could not record %d audit events", len(batch))
        for _, _, done, _ in batch:
            if done is not None:
                done()

    def _insert(self, items: list[tuple[str, Any]], conn: sqlite3.Connection) -> None:
        """Insert rows and summary counts in the current transaction (a failure becomes one or the
        other here, see :class:`FailureWindows`)."""
        events: list[AuditEvent] = []
        counts: list[_Count] = []
        for kind, obj in items:
            if kind == "count":  # an older journal's decided count (a plain dict when replayed)
                counts.append(count_from_json(obj) if isinstance(obj, dict) else obj)
                continue
            counted = self.failures.classify(conn, obj) if kind == "failure" else None
            if counted is None:
                events.append(obj)
            else:
                counts.append(counted)
        if events:
            self._catalog.record_audit(events)
        for c in counts:
            conn.execute(
                "INSERT INTO audit_failure_summary (client_address, action, window_start, "
                "last_time, failures, status_code, recipient) VALUES (?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT (client_address, action, window_start) DO UPDATE SET "
                "failures = audit_failure_summary.failures + 1, last_time = excluded.last_time, "
                "status_code = excluded.status_code, "
                "recipient = COALESCE(excluded.recipient, audit_failure_summary.recipient)",
                (c.address, c.action, c.window_start, c.when, c.status, c.recipient),
            )
        if any(kind == "failure" for kind, _ in items):
            self.failures.cleanup(conn)

    def _prune_if_due(self) -> None:
        if self._retention <= 0 or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + _PRUNE_EVERY_SECONDS
        try:
            self.prune()
        except Exception:  # noqa: BLE001 - retried at the next round
            log.exception("could not delete old audit rows")

    def prune(self) -> int:
        """Delete the rows older than the retention period now; returns how many were deleted."""
        if self._retention <= 0:
            return 0
        cutoff = clock.now() - self._retention * 86400

        def body(conn: sqlite3.Connection) -> int:
            n = conn.execute("DELETE FROM audit WHERE event_time < ?", (cutoff,)).rowcount
            n += conn.execute(
                "DELETE FROM audit_failure_summary WHERE last_time < ?", (cutoff,)
            ).rowcount
            return int(n)

        return self._catalog.db.write(body)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)
