"""What several server processes (workers of one server, or replicas behind a proxy) must share.

- The signing key: ``<lab home>/server/secret.key``, or the file ``$SHARELAB_SIGNING_KEY_FILE`` names
  (replicas with lab homes of their own point it at one key, so a URL signed by one is served by another).
- The failure-throttling buckets (:class:`CatalogThrottle`): kept in the catalog's database instead of the
  process's memory when the server has several workers or its catalog is PostgreSQL (replicas), so a
  client guessing tokens is throttled by all of them at once. One write per failure; the read of a request
  is skipped while its address has not failed lately (:class:`~helpers.server.throttle.FailureMarks`, shared
  by a server's forked workers). On PostgreSQL a failure is also sent to every replica's watch
  (:func:`helpers.catalog.watch.notify`, topic ``throttle``), which marks it there: a replica reads the
  bucket only for an address that failed lately, or while its watch does not vouch (no live lease, or less
  than a window since it (re)connected and may have missed notes). Another replica's failure is seen once
  its note arrives (milliseconds after the commit).
- Downloads handed to the proxy: with ``$SHARELAB_ACCEL_REDIRECT`` set to an internal location prefix
  (e.g. ``/_sharelab_files``), a download answers ``X-Accel-Redirect: <prefix><absolute file path>`` after
  its signature check and nginx streams the file itself (see ``docker/nginx/``).
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from helpers.catalog.db import Database
    from helpers.home import LabHome

__all__ = [
    "ACCEL_ENV",
    "KEY_FILE_ENV",
    "CatalogThrottle",
    "accel_redirect_path",
    "make_throttle",
    "signing_key_path",
]

KEY_FILE_ENV = "SHARELAB_SIGNING_KEY_FILE"
ACCEL_ENV = "SHARELAB_ACCEL_REDIRECT"
_COMPONENT = "throttle"
_TOPIC = "throttle"


def signing_key_path(home: LabHome) -> Path:
    """The signing key file: ``$SHARELAB_SIGNING_KEY_FILE``, else ``<home>/server/secret.key``."""
    raw = os.environ.get(KEY_FILE_ENV, "").strip()
    return Path(raw).expanduser() if raw else home.server_dir / "secret.key"


def accel_redirect_path(file_path: str | os.PathLike[str]) -> str | None:
    """The ``X-Accel-Redirect`` value for ``file_path`` when the hand-off is on (else None)."""
    prefix = os.environ.get(ACCEL_ENV, "").strip().rstrip("/")
    if not prefix:
        return None
    return prefix + quote(os.path.abspath(os.fspath(file_path)))


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE throttle_buckets (address TEXT PRIMARY KEY, tokens REAL NOT NULL, "
        "since REAL NOT NULL)"
    )


class CatalogThrottle:
    """:class:`~helpers.server.throttle.FailureThrottle`'s token buckets, kept in the catalog's database.

    :param db: the catalog's database layer. :param burst: failures allowed at once. :param rate: failures
        per second after the burst. :param clock: wall-clock seconds (shared by every process).
    """

    def __init__(
        self, db: Database, burst: int, rate: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.burst = float(max(1, burst))
        self.rate = float(rate)
        self._clock = clock
        db.ensure_schema(_COMPONENT, {1: _migrate_to_1})
        from helpers.catalog.watch import listen
        from helpers.server.throttle import FailureMarks

        # made before the workers fork (create_app): they all see it; other replicas (PostgreSQL) learn
        # of failures through the watch (the topic's notes, _heard)
        self._marks = FailureMarks()
        self._deaf_until = 0.0 if db.backend == "sqlite" else math.inf
        listen(db, _TOPIC, self._heard)

    def _window(self) -> float:
        # a bucket holds >= 1 token 1/rate seconds after its last failure (+1 s for clock steps)
        return 1 / max(self.rate, 1e-9) + 1

    def _heard(self, address: str | None) -> None:
        """A failure another replica committed (or None: notes may have been missed until now)."""
        now = self._clock()
        if address is None:
            self._deaf_until = now + self._window()
        else:
            self._marks.mark(address, now)

    def _vouched(self, address: str) -> bool:
        """Whether ``address`` has surely not failed lately (then its bucket is full: no read)."""
        now = self._clock()
        if now - self._marks.last(address) <= self._window():
            return False
        if self.db.backend == "sqlite":
            return True
        from helpers.catalog.watch import watched_generation

        return now > self._deaf_until and watched_generation(self.db) is not None

    def _level(self, row: Any, now: float) -> float:
        if row is None:
            return self.burst
        return float(min(self.burst, row["tokens"] + max(0.0, now - row["since"]) * self.rate))

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again (0: it may try now)."""
        if self._vouched(address):
            return 0
        row = self.db.read(
            lambda c: c.execute(
                "SELECT tokens, since FROM throttle_buckets WHERE address = ?", (address,)
            ).fetchone()
        )
        if row is None:
            return 0
        level = self._level(row, self._clock())
        return 0 if level >= 1 else max(1, math.ceil((1 - level) / max(self.rate, 1e-9)))

    def failed(self, address: str) -> None:
        """Count one failure of ``address`` (and forget buckets that are full again)."""
        now = self._clock()
        self._marks.mark(address, now)  # before the bucket: a concurrent check reads the bucket

        def body(c: sqlite3.Connection) -> None:
            row = c.execute(
                "SELECT tokens, since FROM throttle_buckets WHERE address = ?", (address,)
            ).fetchone()
            level = max(0.0, self._level(row, now) - 1)
            c.execute(
                "INSERT INTO throttle_buckets (address, tokens, since) VALUES (?, ?, ?) "
                "ON CONFLICT (address) DO UPDATE SET tokens = excluded.tokens, since = excluded.since",
                (address, level, now),
            )
            if self.rate > 0:  # full again after burst / rate seconds
                c.execute(
                    "DELETE FROM throttle_buckets WHERE since < ?", (now - self.burst / self.rate,)
                )
            if self.db.backend == "postgresql":  # the other replicas' watches, with the commit
                from helpers.catalog.watch import notify

                notify(c, _TOPIC, address)

        self.db.write(body)


def make_throttle(db: Database, burst: int, rate: float) -> Any:
    """The throttle of one server process: shared (:class:`CatalogThrottle`) when it has several workers
    (``$SHARELAB_WORKERS`` > 1 in the server's environment) or a PostgreSQL catalog; else in memory."""
    from helpers.server.throttle import FailureThrottle

    try:
        workers = int(os.environ.get("SHARELAB_WORKERS", "1") or 1)
    except ValueError:
        workers = 1
    if workers > 1 or db.backend != "sqlite":
        return CatalogThrottle(db, burst, rate)
    return FailureThrottle(burst, rate)
