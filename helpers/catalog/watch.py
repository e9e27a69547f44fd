"""The access generation watched without a round trip per request (PostgreSQL catalogs only).

On SQLite the generation is a local one-row read (microseconds). On PostgreSQL it is a round trip, which
would dominate a remembered ``authenticate``. So a sharing server process *watches* it instead:

- a trigger on the counter sends ``NOTIFY`` (channel of the catalog's schema, payload the new value) and
  notes the value in the transaction (``sharelab.access_bumped``), both delivered with the commit;
- each watching process holds one ``LISTEN`` connection and a row of ``access_watchers``: the generation
  it has seen, and a lease (the database's clock + :data:`LEASE_SECONDS`) renewed every
  :data:`RENEW_SECONDS`. While its lease holds locally (measured from *before* the renewal was sent, less
  a margin, so it always ends before the database's), :func:`watched_generation` answers from memory;
- a writer whose transaction bumped the counter (every access-changing write through
  :class:`~helpers.catalog.db.Database`, in any process) waits after its commit until every watcher with a
  live lease has seen that value (or its lease ran out). So when a revocation returns, every replica
  already refuses: exactly as immediate as a read per request, without one.

A watcher that loses its connection, stalls or is killed stops trusting its memory when its lease ends
(then every request reads the counter again) and a writer waits for it at most that long. Registration
comes before ``LISTEN`` and the first read, so no commit falls between them unseen.

Other components may ride the same connection with a *topic* of their own (:func:`listen` before the
watch starts, :func:`notify` inside a write transaction): the watcher calls the topic's callback with
each payload, and with ``None`` whenever notes may have been missed (at every (re)connection), so the
component can stop trusting what it has heard until it reads again.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from helpers.catalog.backends.postgres import ACCESS_BUMPED
from helpers.catalog.db import Database

__all__ = [
    "LEASE_SECONDS",
    "RENEW_SECONDS",
    "ensure_watch_schema",
    "listen",
    "notify",
    "start_watch",
    "stop_watch",
    "wait_for_watchers",
    "watched_generation",
]

log = logging.getLogger("sharelab.catalog")

#: How long a watcher's word holds without a renewal (the longest a writer waits for a stalled one).
LEASE_SECONDS = 2.0
#: How often a watcher renews its lease (and reads the counter, in case a notification was lost).
RENEW_SECONDS = 0.4
#: Taken off the lease locally: the watcher stops trusting itself before the database lets it go.
MARGIN_SECONDS = 0.3
_COMPONENT = "access_watch"
# one channel per topic and catalog schema: "sharelab_<topic>_<md5 of the schema>" (the access trigger's
# topic is "access"); the schema is the counter table's, as the trigger sees it
_SCHEMA_TAG = (
    "SELECT left(md5(n.nspname), 16) FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass('access_generation')"
)
_NOTIFY_SQL = (
    "SELECT pg_notify('sharelab_' || ? || '_' || left(md5(n.nspname), 16), ?) "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass('access_generation')"
)
Note = Callable[[str | None], None]
"""A topic's callback: a payload, or None when notes may have been missed (trust nothing heard)."""
# per catalog, inherited by forked workers (each one's own watch calls them)
_TOPICS: weakref.WeakKeyDictionary[Database, dict[str, Note]] = weakref.WeakKeyDictionary()
_DB_NOW = "extract(epoch from clock_timestamp())"


def _migrate_to_1(conn: Any) -> None:
    conn.execute(
        "CREATE TABLE access_watchers (id TEXT PRIMARY KEY, seen BIGINT NOT NULL, "
        "lease_until DOUBLE PRECISION NOT NULL)"
    )
    conn.execute("SELECT 1")  # sends the transaction's pending BEGIN before the raw statements
    raw = conn.raw  # plpgsql: past the translation layer
    raw.execute(
        "CREATE OR REPLACE FUNCTION access_generation_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('sharelab_access_' || left(md5(TG_TABLE_SCHEMA), 16), NEW.n::text); "
        f"PERFORM set_config('{ACCESS_BUMPED}', NEW.n::text, true); RETURN NULL; END $$"
    )
    raw.execute(
        "CREATE TRIGGER access_generation_notify AFTER UPDATE ON access_generation "
        "FOR EACH ROW EXECUTE FUNCTION access_generation_notify()"
    )


def ensure_watch_schema(db: Database) -> None:
    """The watchers' table and the counter's notify trigger (PostgreSQL; after the counter is made),
    and the wait of :func:`wait_for_watchers` after every commit that bumped the counter."""
    if db.backend != "postgresql":
        return
    db.ensure_schema(_COMPONENT, {1: _migrate_to_1})
    db.after_access_change = lambda generation: wait_for_watchers(db, generation)


def wait_for_watchers(db: Database, generation: int) -> None:
    """Return once every watcher with a live lease has seen ``generation`` (or its lease ended)."""
    deadline = time.monotonic() + LEASE_SECONDS + 1.0
    delay = 0.0005
    while True:
        waiting = db.read_one(
            lambda c: c.execute(
                f"SELECT count(*) FROM access_watchers WHERE seen < ? AND lease_until > {_DB_NOW}",
                (generation,),
            ).fetchone()[0]
        )
        if not waiting or time.monotonic() > deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


class _Watcher:
    """One process's watch of one catalog: a thread with its own ``LISTEN`` connection."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.id = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.known: int | None = None
        self.trusted_until = 0.0  # time.monotonic(); 0: not trusted
        self.topics = dict(_TOPICS.get(db, {}))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sharelab-watch", daemon=True)
        self._thread.start()

    def current(self) -> int | None:
        """The generation this process has seen, while its lease holds; else None (read it)."""
        known = self.known
        if known is None or time.monotonic() >= self.trusted_until:
            return None
        return known

    def stop(self) -> None:
        self._stop.set()
        self.trusted_until = 0.0
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = None
            try:
                conn = self.db.dedicated_connection()
                self._watch(conn.raw)
            except Exception as exc:  # noqa: BLE001 - lost database: read per request, then retry
                self.trusted_until = 0.0
                if not self._stop.is_set():
                    log.warning("access watch of %s paused: %s", self.db.location, exc)
                    self._stop.wait(1.0)
            finally:
                if conn is not None:
                    self._leave(conn.raw)

    def _renew(self, raw: Any, seen: int) -> int:
        """Renew the lease acknowledging ``seen``; returns the counter now (read in the same statement)."""
        sent = time.monotonic()
        row = raw.execute(
            f"UPDATE access_watchers SET seen = %s, lease_until = {_DB_NOW} + %s WHERE id = %s "
            "RETURNING (SELECT n FROM access_generation WHERE id = 1)",
            (seen, LEASE_SECONDS, self.id),
        ).fetchone()
        if row is None:
            raise RuntimeError("the watcher's row was removed")
        self.trusted_until = sent + LEASE_SECONDS - MARGIN_SECONDS
        return int(row[0])

    def _watch(self, raw: Any) -> None:
        # registered (seen -1: writers wait for it) before LISTEN and the first read: no commit unseen
        raw.execute(
            f"DELETE FROM access_watchers WHERE lease_until < {_DB_NOW} - 60"
        )  # long gone watchers
        raw.execute(
            f"INSERT INTO access_watchers (id, seen, lease_until) VALUES (%s, -1, {_DB_NOW} + %s) "
            "ON CONFLICT (id) DO UPDATE SET seen = -1, lease_until = excluded.lease_until",
            (self.id, LEASE_SECONDS),
        )
        tag = raw.execute(_SCHEMA_TAG).fetchone()[0]
        channel = f"sharelab_access_{tag}"
        raw.execute(f'LISTEN "{channel}"')
        topics = {f"sharelab_{t}_{tag}": cb for t, cb in self.topics.items()}
        for name, callback in topics.items():
            raw.execute(f'LISTEN "{name}"')
            callback(None)  # listening from now on: what came before was not heard
        now = int(raw.execute("SELECT n FROM access_generation WHERE id = 1").fetchone()[0])
        self.known = now
        while not self._stop.is_set():
            latest = self._renew(raw, self.known)  # acknowledges only what is already in memory
            if latest > self.known:
                self.known = latest  # a notification lost or late: acknowledged at the next renewal
                continue
            for note in raw.notifies(timeout=RENEW_SECONDS, stop_after=1):
                self._heard(note, channel, topics)
            for note in raw.notifies(timeout=0.0):  # drain what came with it
                self._heard(note, channel, topics)

    def _heard(self, note: Any, channel: str, topics: dict[str, Note]) -> None:
        if note.channel == channel:
            self.known = max(self.known or 0, int(note.payload))
            return
        callback = topics.get(note.channel)
        if callback is not None:
            try:
                callback(note.payload)
            except Exception:  # noqa: BLE001 - a topic's failure must not stop the watch
                log.exception("a listener of %s failed", note.channel)

    def _leave(self, raw: Any) -> None:
        try:
            raw.execute("DELETE FROM access_watchers WHERE id = %s", (self.id,))
        except Exception:  # noqa: BLE001, S110 - the lease ends by itself
            pass
        try:
            raw.close()
        except Exception:  # noqa: BLE001, S110
            pass


_WATCHERS: dict[tuple[int, int], _Watcher] = {}
_LOCK = threading.Lock()


def listen(db: Database, topic: str, callback: Note) -> None:
    """Have this process's watch of ``db`` (started after this call) pass ``topic``'s notes to
    ``callback`` (on the watch's thread): each payload of :func:`notify`, and None at every (re)connection.
    PostgreSQL only; a no-op on SQLite."""
    if db.backend != "postgresql":
        return
    with _LOCK:
        _TOPICS.setdefault(db, {})[topic] = callback


def notify(conn: Any, topic: str, payload: str) -> None:
    """Send ``payload`` to ``topic``'s listeners of this catalog, delivered with the commit of the
    transaction ``conn`` is in (PostgreSQL; call only there)."""
    conn.execute(_NOTIFY_SQL, (topic, payload))


def start_watch(db: Database) -> None:
    """Watch ``db``'s access generation from this process (a sharing server; PostgreSQL only)."""
    if db.backend != "postgresql":
        return
    key = (id(db), os.getpid())
    with _LOCK:
        if key not in _WATCHERS:
            _WATCHERS[key] = _Watcher(db)


def stop_watch(db: Database) -> None:
    """Stop this process's watch of ``db`` (its row removed: writers stop waiting for it)."""
    with _LOCK:
        watcher = _WATCHERS.pop((id(db), os.getpid()), None)
    if watcher is not None:
        watcher.stop()


def watched_generation(db: Database) -> int | None:
    """The generation this process's watch of ``db`` vouches for now, or None (read the counter)."""
    watcher = _WATCHERS.get((id(db), os.getpid()))
    return None if watcher is None else watcher.current()
