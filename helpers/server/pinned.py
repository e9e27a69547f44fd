"""A table served at a pinned version: the share entry's :attr:`SharedTable.pinned_version` (set by
:meth:`Catalog.pin_table_version`, e.g. when the data mesh publishes a product version).

:class:`PinnedDeltaLog` is a view of a table's :class:`~helpers.storage.delta_log.DeltaLog` that ends at the
pin: ``latest_version()`` is the pin, a snapshot, commit or timestamp after it does not exist, so every
route (``/version``, ``/metadata``, ``/query`` with or without time travel or ``startingVersion``,
``/changes``, file downloads) serves the pinned version and its history up to it, in the parquet and
delta response formats alike, with the server's ordinary "after the latest version" errors. Commits after
the pin (an unpublished change) are never served until the pin moves.
"""

from __future__ import annotations

from helpers.storage.delta_log import Commit, DeltaLog, DeltaLogError, ObjectStoreDeltaLog, Snapshot

__all__ = ["PinnedDeltaLog", "object_store_log", "pinned", "unpinned"]


class PinnedDeltaLog(DeltaLog):
    """``inner`` as if its last commit were ``pin`` (reads delegate to ``inner`` and its caches).

    :raises DeltaLogError: from every read when the table no longer has version ``pin`` (rewritten).
    """

    def __init__(self, inner: DeltaLog, pin: int) -> None:  # no super().__init__: a view, no state
        self.inner = inner
        self.pin = pin
        self.location = inner.location
        self.root = inner.root
        self.log_dir = inner.log_dir
        self.is_object_store = inner.is_object_store

    def _check(self) -> int:
        latest = self.inner.latest_version()
        if self.pin > latest:
            raise DeltaLogError(
                f"The published version {self.pin} of this table no longer exists (the table was "
                f"rewritten; its latest version is {latest}); the provider must publish it again"
            )
        return self.pin

    def _guard(self, version: int) -> None:
        pin = self._check()
        if version > pin:
            raise DeltaLogError(
                f"Version {version} of the table does not exist; the latest version is {pin}"
            )

    def latest_version(self) -> int:
        return self._check()

    def earliest_version(self) -> int:
        return min(self.inner.earliest_version(), self._check())

    def earliest_commit(self) -> int:
        return min(self.inner.earliest_commit(), self._check())

    def commit(self, version: int) -> Commit:
        self._guard(version)
        return self.inner.commit(version)

    def commit_timestamp(self, version: int) -> int:
        self._guard(version)
        return self.inner.commit_timestamp(version)

    def timestamps(self) -> dict[int, int]:
        pin = self._check()
        return {v: ts for v, ts in self.inner.timestamps().items() if v <= pin}

    def _after_pin(self, ts_ms: int) -> bool:
        stamps = self.timestamps()
        return bool(stamps) and ts_ms > stamps[max(stamps)]

    def version_at_or_after(self, ts_ms: int, *, before_first_ok: bool, text: str = "") -> int:
        if self._after_pin(ts_ms):
            # the server's own message for a time after the latest version, with the pin as latest
            return _StampsView(self.timestamps()).version_at_or_after(
                ts_ms, before_first_ok=before_first_ok, text=text
            )
        return self.inner.version_at_or_after(ts_ms, before_first_ok=before_first_ok, text=text)

    def version_at_or_before(self, ts_ms: int, *, after_last_ok: bool, text: str = "") -> int:
        if self._after_pin(ts_ms):
            if after_last_ok:
                return self.pin
            return _StampsView(self.timestamps()).version_at_or_before(
                ts_ms, after_last_ok=after_last_ok, text=text
            )
        return self.inner.version_at_or_before(ts_ms, after_last_ok=after_last_ok, text=text)

    def snapshot(self, version: int | None = None) -> Snapshot:
        if version is None:
            version = self._check()
        self._guard(version)
        return self.inner.snapshot(version)

    def file_path(self, raw_path: str) -> str:
        return self.inner.file_path(raw_path)

    def __getattr__(self, name: str) -> object:  # settings, object_key, fs of an object-store log
        return getattr(self.inner, name)


class _StampsView(DeltaLog):
    """Just the timestamp lookups of :class:`DeltaLog` over given stamps (for their error messages)."""

    def __init__(self, stamps: dict[int, int]) -> None:  # no super().__init__: nothing else is read
        self._stamps = stamps

    def timestamps(self) -> dict[int, int]:
        return self._stamps


def pinned(log_: DeltaLog, pin: int | None) -> DeltaLog:
    """``log_`` viewed up to ``pin`` (``log_`` itself when not pinned)."""
    return log_ if pin is None else PinnedDeltaLog(log_, pin)


def unpinned(log_: DeltaLog) -> DeltaLog:
    """The whole log behind ``log_`` (for a signed file URL, which names the version it was issued for)."""
    return log_.inner if isinstance(log_, PinnedDeltaLog) else log_


def object_store_log(log_: DeltaLog) -> ObjectStoreDeltaLog | None:
    """The object-store log behind ``log_`` (pinned or not), or None for a local table."""
    inner = log_.inner if isinstance(log_, PinnedDeltaLog) else log_
    return inner if isinstance(inner, ObjectStoreDeltaLog) else None
