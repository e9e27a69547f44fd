"""The audit's own write-ahead journal: a row is durable (against a crash of the server process) the
moment its line is appended, before the response is sent; SQLite gets it in batches afterwards.

Each server process appends JSON lines ``{"q": seq, "k": "event"|"failure"|"count", "d": {...}}`` to its own file
``server/audit-<pid>-<random>.journal`` (mode 0600, held with an exclusive ``flock``). The writer thread
inserts them into the catalog in group commits and, in the same transaction, records the last sequence
number committed (table ``audit_journal_mark``); once everything appended is committed the file is
truncated. At start-up a server replays every journal no live process holds (a server killed with
``kill -9``): the lines after its mark are inserted, then the file and its mark are removed. ``write(2)``
without ``fsync``: a power cut may lose the last lines, a killed process loses nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from helpers.catalog import AuditEvent, Catalog, clock

__all__ = ["AuditJournal", "ensure_journal_schema"]

log = logging.getLogger("sharelab.server")

_COMPONENT = "server_audit_journal"
_EVENT_KINDS = ("event", "failure")
"""Kinds whose lines hold an :class:`AuditEvent` (a failure's row-or-count is decided at its commit)."""


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE audit_journal_mark (journal TEXT PRIMARY KEY, seq INTEGER NOT NULL)")


def ensure_journal_schema(catalog: Catalog) -> None:
    catalog.db.ensure_schema(_COMPONENT, {1: _migrate_to_1})


@functools.lru_cache(maxsize=8)
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


_EVENT_FIELDS = _names(AuditEvent)
_TIME = _EVENT_FIELDS.index("event_time")


def encode(kind: str, obj: Any) -> list[Any] | dict[str, Any]:
    """A row as the list of its fields in :class:`AuditEvent`'s order (half the JSON of a dict: one
    is written per request), or a count as a flat JSON-able dict."""
    if kind in _EVENT_KINDS:
        values = [getattr(obj, name) for name in _EVENT_FIELDS]
        values[_TIME] = clock.to_epoch(obj.event_time)
        return values
    cls: type = type(obj)
    return {name: getattr(obj, name) for name in _names(cls)}


def decode_event(data: list[Any] | dict[str, Any]) -> AuditEvent:
    """A row read back: a list of fields, or a dict of them (the journals of earlier versions)."""
    found = dict(zip(_EVENT_FIELDS, data, strict=True)) if isinstance(data, list) else dict(data)
    found["event_time"] = clock.from_epoch(found["event_time"])
    return AuditEvent(**found)


def _line(record: dict[str, Any]) -> str:
    """The record's JSON; a field of a type JSON lacks is written as its text (``default=str``
    builds an encoder per call: twice the cost, and a line is written per request)."""
    try:
        return json.dumps(record)
    except TypeError:
        return json.dumps(record, default=str)


class AuditJournal:
    """This process's journal file in ``directory``; thread-safe appends.

    :param directory: the lab home's ``server`` directory.
    :param catalog: where the marks live.
    """

    def __init__(self, directory: Path, catalog: Catalog) -> None:
        ensure_journal_schema(catalog)
        self._catalog = catalog
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"audit-{os.getpid()}-{secrets.token_hex(4)}.journal"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()
        self._seq = 0
        self._committed = 0

    def append(self, kind: str, obj: Any, then: Callable[[int], None]) -> None:
        """Append one line, then call ``then(seq)`` under the same lock (so queue order = file order)."""
        with self._lock:
            self._seq += 1
            line = _line({"q": self._seq, "k": kind, "d": encode(kind, obj)})
            os.write(self._fd, (line + "\n").encode("utf-8", "surrogatepass"))
            then(self._seq)

    def mark(self, conn: sqlite3.Connection, seq: int) -> None:
        """Record (in the caller's transaction) that every line up to ``seq`` is committed."""
        conn.execute(
            "INSERT INTO audit_journal_mark (journal, seq) VALUES (?, ?) "
            "ON CONFLICT (journal) DO UPDATE SET seq = excluded.seq",
            (self.path.name, seq),
        )

    def committed(self, seq: int) -> None:
        """After the commit of ``mark(seq)``: truncate the file when nothing newer was appended."""
        with self._lock:
            self._committed = max(self._committed, seq)
            if self._committed == self._seq:
                os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Close and remove the journal (everything in it is committed) with its mark."""
        with self._lock:
            if self._committed == self._seq:
                with contextlib.suppress(OSError):
                    self.path.unlink()
                self._catalog.db.write(
                    lambda conn: conn.execute(
                        "DELETE FROM audit_journal_mark WHERE journal = ?", (self.path.name,)
                    )
                )
            os.close(self._fd)

    def replay(self, write: Callable[[list[tuple[str, Any]], sqlite3.Connection], None]) -> int:
        """Insert the uncommitted lines of journals left by dead processes; returns how many.

        ``write(items, conn)`` inserts ``(kind, obj)`` items in the given transaction.
        """
        replayed = 0
        for other in sorted(self.directory.glob("audit-*.journal")):
            if other == self.path:
                continue
            try:
                fd = os.open(other, os.O_RDONLY)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live server's journal
                if os.fstat(fd).st_nlink == 0:
                    continue  # another worker replayed and removed it meanwhile
                replayed += self._replay_one(other, write)
            finally:
                os.close(fd)
        return replayed

    def _replay_one(
        self, path: Path, write: Callable[[list[tuple[str, Any]], sqlite3.Connection], None]
    ) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT seq FROM audit_journal_mark WHERE journal = ?", (path.name,)
            ).fetchone()
            done = int(row[0]) if row else 0
            items: list[tuple[str, Any]] = []
            for line in path.read_text("utf-8", "surrogatepass").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut by the crash
                    continue
                try:
                    if int(entry["q"]) <= done:
                        continue
                    # a count stays a plain dict: the writer that owns its type reads it back
                    obj = decode_event(entry["d"]) if entry["k"] in _EVENT_KINDS else entry["d"]
                except (KeyError, TypeError, ValueError):  # not a line this version wrote or reads
                    log.warning("audit: skipped an unreadable line of %s", path.name)
                    continue
                items.append((entry["k"], obj))
            if items:
                write(items, conn)
            conn.execute("DELETE FROM audit_journal_mark WHERE journal = ?", (path.name,))
            return len(items)

        n = self._catalog.db.write(body)
        with contextlib.suppress(OSError):
            path.unlink()
        return n
