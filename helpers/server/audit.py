"""The audit trail: what a handler learned about a request, and the background writer of audit rows.

Requests never wait for SQLite: events are queued and written in batches on one thread
(flushed on shutdown).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from starlette.requests import Request

from helpers.catalog import AuditEvent, Catalog

__all__ = ["AuditInfo", "AuditWriter", "audit_event"]

log = logging.getLogger("sharelab.server")


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


def audit_event(request: Request, info: AuditInfo, status: int, started: float) -> AuditEvent:
    """The audit row of a finished request (``started`` is its :func:`time.perf_counter`)."""
    client = request.client
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
        user_agent=request.headers.get("user-agent"),
        client_address=client.host if client else None,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        response_format=info.response_format,
    )


class AuditWriter:
    """Batches audit events on a background thread so requests never wait for SQLite."""

    def __init__(self, catalog: Catalog, batch_window: float = 0.05, max_batch: int = 500) -> None:
        self._catalog = catalog
        self._queue: queue.Queue[AuditEvent | object] = queue.Queue()
        self._window = batch_window
        self._max = max_batch
        self._thread: threading.Thread | None = None
        self._stop = object()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sharelab-audit", daemon=True)
            self._thread.start()

    def put(self, event: AuditEvent) -> None:
        self._queue.put(event)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is self._stop:
                break
            batch = [item]
            deadline = time.monotonic() + self._window
            while len(batch) < self._max:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is self._stop:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
        rest = []
        while True:  # drain whatever arrived after the stop marker
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not self._stop:
                rest.append(item)
        self._write(rest)

    def _write(self, batch: list[AuditEvent | object]) -> None:
        if not batch:
            return
        try:  # only put() adds to the queue: every item but the stop marker is an AuditEvent
            self._catalog.record_audit(cast("list[AuditEvent]", batch))
        except Exception:  # an audit failure must not take the server down
            log.exception("could not record %d audit events", len(batch))

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(self._stop)
            self._thread.join(timeout)
            self._thread = None
