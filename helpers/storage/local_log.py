"""Reader of a local Delta table's ``_delta_log``: listing, commits, timestamps, snapshots.

:class:`DeltaLog` keeps small caches per table (snapshots LRU, commits LRU, commit timestamps) and
rebuilds a version from the closest cached snapshot or checkpoint. Its storage hooks
(``_refresh``, ``_read_bytes``, ``_mtime_ms``, ``_checkpoint_source``, ``_raw_timestamp``) read local
files; :class:`~helpers.storage.object_log.ObjectStoreDeltaLog` overrides them for S3.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote, urlparse

from helpers.exceptions import InvalidArgumentError, NotADeltaTableError
from helpers.storage.actions import (
    CheckpointState,
    Commit,
    DeltaLogError,
    Snapshot,
    action_key,
    classify_log_names,
    fast_action,
    format_timestamp,
    parse_checkpoint,
    parse_commit_lines,
)

__all__ = ["DeltaLog", "local_path"]

_SNAPSHOT_CACHE_SIZE = 8
_COMMIT_CACHE_SIZE = 256


class DeltaLog:
    """Reader of one table's ``_delta_log``. Thread-safe; one instance per table location.

    :param location: the table root (a local path or ``file://`` URI).
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self.root = local_path(location)
        self.log_dir = os.path.join(self.root, "_delta_log")
        self._lock = threading.RLock()
        self._identity: tuple[int, int] | None = None
        self._listing_key: tuple[int, int, int] | None = None
        self._commits: list[int] = []
        self._checkpoints: dict[int, list[str]] = {}
        self._latest = -1
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._commit_cache: OrderedDict[int, Commit] = OrderedDict()
        self._raw_ts: dict[int, int] = {}
        self._ts: dict[int, int] = {}
        self._ts_key: tuple[int, int, int] | None = None
        self._checkpoint_state: tuple[int, CheckpointState] | None = None
        self._first_file: tuple[int, int] | None = None
        self._building: dict[int, threading.Event] = {}

    # ------------------------------------------------------------------ listing
    def _refresh(self) -> None:
        """Re-list ``_delta_log`` when it changed; drop every cache when the directory was replaced."""
        try:
            st = os.stat(self.log_dir)
        except FileNotFoundError:
            raise NotADeltaTableError(
                f"{self.location} is not a Delta table (no _delta_log); re-generate the dataset or "
                "register a Delta table path"
            ) from None
        identity = (st.st_ino, st.st_dev)
        key = (st.st_ino, st.st_dev, st.st_mtime_ns)
        if identity != self._identity:
            self._identity = identity
            self._forget_cached()
            self._listing_key = None
        if key == self._listing_key:
            # mtime has coarse granularity: probe for a commit written in the same tick
            if not os.path.exists(self._commit_path(self._latest + 1)):
                return
        with os.scandir(self.log_dir) as it:
            commits, checkpoints = classify_log_names(entry.name for entry in it)
        # a table deleted and rewritten in place may get the same directory inode back: also compare the
        # identity of its oldest log file, and forget everything cached when it changed
        first: tuple[int, int] | None = None
        oldest = self._oldest_log_file(commits, checkpoints)
        if oldest is not None:
            with contextlib.suppress(FileNotFoundError):
                fst = os.stat(oldest)
                first = (fst.st_ino, fst.st_mtime_ns)
        self._adopt_listing(
            first,
            commits,
            checkpoints,
            f"{self.location} has an empty _delta_log; write the table again",
        )
        self._listing_key = key

    def _forget_cached(self) -> None:
        self._snapshots.clear()
        self._commit_cache.clear()
        self._raw_ts.clear()
        self._ts = {}
        self._ts_key = None
        self._checkpoint_state = None

    def _oldest_log_file(self, commits: list[int], checkpoints: dict[int, list[str]]) -> str | None:
        if commits:
            return self._commit_path(commits[0])
        if checkpoints:
            return os.path.join(self.log_dir, checkpoints[min(checkpoints)][0])
        return None

    def _adopt_listing(
        self,
        first: tuple[int, int] | None,
        commits: list[int],
        checkpoints: dict[int, list[str]],
        empty_message: str,
    ) -> None:
        """Take a fresh listing; ``first`` identifies the oldest log file (a rewritten table forgets its cache)."""
        if first != self._first_file:
            self._first_file = first
            self._forget_cached()
        self._commits = commits
        self._checkpoints = checkpoints
        latest = max([*commits, *checkpoints.keys()], default=-1)
        if latest < 0:
            raise NotADeltaTableError(empty_message)
        self._latest = latest

    def _commit_path(self, version: int) -> str:
        return os.path.join(self.log_dir, f"{version:020d}.json")

    def latest_version(self) -> int:
        """The newest version of the table."""
        with self._lock:
            self._refresh()
            return self._latest

    def earliest_version(self) -> int:
        """The oldest version that can be reconstructed (a checkpoint, or commit 0)."""
        with self._lock:
            self._refresh()
            candidates = []
            if self._commits and self._commits[0] == 0:
                candidates.append(0)
            candidates.extend(self._checkpoints)
            return min(candidates) if candidates else self._latest

    def earliest_commit(self) -> int:
        """The oldest commit file still present (CDF can only start there)."""
        with self._lock:
            self._refresh()
            return self._commits[0] if self._commits else self._latest

    # ------------------------------------------------------------------ commits
    def _read_commit_file(self, version: int) -> list[dict[str, Any]]:
        path = self._commit_path(version)
        try:
            data = self._read_bytes(path)
        except FileNotFoundError:
            raise DeltaLogError(
                f"Commit {version} of the table is no longer available (log cleaned up); "
                f"use a version at or after {self.earliest_commit()}"
            ) from None
        return parse_commit_lines(data)

    def commit(self, version: int) -> Commit:
        """The actions of commit ``version`` (cached)."""
        with self._lock:
            self._refresh()
            cached = self._commit_cache.get(version)
            if cached is not None:
                self._commit_cache.move_to_end(version)
                return cached
        actions = self._read_commit_file(version)
        adds, removes, cdcs = [], [], []
        metadata = protocol = info = None
        for action in actions:
            if "add" in action:
                adds.append(fast_action(action["add"]))
            elif "remove" in action:
                removes.append(fast_action(action["remove"]))
            elif "cdc" in action:
                cdcs.append(fast_action(action["cdc"]))
            elif "metaData" in action:
                metadata = action["metaData"]
            elif "protocol" in action:
                protocol = action["protocol"]
            elif "commitInfo" in action:
                info = action["commitInfo"]
        raw_ts = self._raw_timestamp_from(version, info)
        with self._lock:
            self._raw_ts[version] = raw_ts
        commit = Commit(
            version=version,
            adds=tuple(adds),
            removes=tuple(removes),
            cdcs=tuple(cdcs),
            metadata=metadata,
            protocol=protocol,
            commit_info=info,
        )
        with self._lock:
            self._commit_cache[version] = commit
            while len(self._commit_cache) > _COMMIT_CACHE_SIZE:
                self._commit_cache.popitem(last=False)
        return commit

    def _raw_timestamp_from(self, version: int, info: dict[str, Any] | None) -> int:
        if info:
            for key in ("inCommitTimestamp", "timestamp"):
                value = info.get(key)
                if value is not None:
                    try:
                        return int(value)
                    except (TypeError, ValueError):
                        pass
        return self._mtime_ms(self._commit_path(version))

    # ------------------------------------------------------------------ storage hooks (local files)
    # an object-store log (:class:`ObjectStoreDeltaLog`) overrides these and :meth:`_refresh`
    is_object_store = False

    def _read_bytes(self, path: str) -> bytes:
        """The content of a log file (:class:`FileNotFoundError` when it is gone)."""
        with open(path, "rb") as fh:
            return fh.read()

    def _mtime_ms(self, path: str) -> int:
        """A log file's modification time in epoch ms (0 when it is gone)."""
        try:
            return int(os.stat(path).st_mtime * 1000)
        except FileNotFoundError:
            return 0

    def _checkpoint_source(self, name: str) -> Any:
        """What :class:`pyarrow.parquet.ParquetFile` opens for the checkpoint part ``name``."""
        return os.path.join(self.log_dir, name)

    def _raw_timestamp(self, version: int) -> int:
        with self._lock:
            cached = self._raw_ts.get(version)
        if cached is not None:
            return cached
        info = None
        path = self._commit_path(version)
        try:
            with open(path, "rb") as fh:
                for line in fh:
                    if b"commitInfo" in line:
                        action = json.loads(line)
                        if "commitInfo" in action:
                            info = action["commitInfo"]
                            break
        except FileNotFoundError:
            info = None
        ts = self._raw_timestamp_from(version, info)
        with self._lock:
            self._raw_ts[version] = ts
        return ts

    def commit_timestamp(self, version: int) -> int:
        """The commit timestamp of ``version`` in epoch ms, made monotonic over the available commits.

        Like the reference server, a commit whose clock went backwards is given its predecessor's
        timestamp + 1 ms, so that timestamp resolution is well defined.
        """
        stamps = self.timestamps()
        if version in stamps:
            return stamps[version]
        return self._raw_timestamp(version)

    def timestamps(self) -> dict[int, int]:
        """Monotonic commit timestamps of every available commit (version -> epoch ms)."""
        with self._lock:
            self._refresh()
            commits = list(self._commits)
            key = (len(commits), commits[0] if commits else -1, commits[-1] if commits else -1)
            if self._ts_key == key:
                return self._ts
        out: dict[int, int] = {}
        prev: int | None = None
        for v in commits:
            ts = self._raw_timestamp(v)
            if prev is not None and ts <= prev:
                ts = prev + 1
            out[v] = ts
            prev = ts
        with self._lock:
            self._ts = out
            self._ts_key = key
        return out

    # ------------------------------------------------------------------ timestamps -> versions
    def version_at_or_after(self, ts_ms: int, *, before_first_ok: bool, text: str = "") -> int:
        """The earliest version committed at or after ``ts_ms``.

        :param before_first_ok: a time before the first commit gives that commit (``/version``), or is an
            error (CDF ``startingTimestamp``).
        :raises DeltaLogError: when the time is after the latest commit (or before the first one and
            ``before_first_ok`` is false).
        """
        stamps = self.timestamps()
        if not stamps:
            raise DeltaLogError("The table has no commit files to resolve a timestamp against")
        shown = text or format_timestamp(ts_ms)
        versions = sorted(stamps)
        last = versions[-1]
        if ts_ms > stamps[last]:
            raise DeltaLogError(
                f"The provided timestamp ({shown}) is after the latest version available to this "
                f"table ({format_timestamp(stamps[last])}, version {last}). Please use a timestamp "
                "less than or equal to that."
            )
        if ts_ms < stamps[versions[0]] and not before_first_ok:
            raise DeltaLogError(
                f"The provided timestamp ({shown}) is before the earliest version available to this "
                f"table ({format_timestamp(stamps[versions[0]])}, version {versions[0]}). Please use a "
                "timestamp greater than or equal to that."
            )
        for v in versions:
            if stamps[v] >= ts_ms:
                return v
        return last  # pragma: no cover - guarded above

    def version_at_or_before(self, ts_ms: int, *, after_last_ok: bool, text: str = "") -> int:
        """The latest version committed at or before ``ts_ms`` (time travel; CDF ``endingTimestamp``).

        :param after_last_ok: a time after the latest commit gives the latest version (CDF end), or is an
            error (time travel).
        :raises DeltaLogError: when the time is before the first commit (or after the latest one and
            ``after_last_ok`` is false).
        """
        stamps = self.timestamps()
        if not stamps:
            raise DeltaLogError("The table has no commit files to resolve a timestamp against")
        shown = text or format_timestamp(ts_ms)
        versions = sorted(stamps)
        first, last = versions[0], versions[-1]
        if ts_ms < stamps[first]:
            raise DeltaLogError(
                f"The provided timestamp ({shown}) is before the earliest version available to this "
                f"table ({format_timestamp(stamps[first])}, version {first}). Please use a timestamp "
                "greater than or equal to that."
            )
        if ts_ms > stamps[last] and not after_last_ok:
            raise DeltaLogError(
                f"The provided timestamp ({shown}) is after the latest version available to this "
                f"table ({format_timestamp(stamps[last])}, version {last}). Please use a timestamp "
                "less than or equal to that."
            )
        found = first
        for v in versions:
            if stamps[v] <= ts_ms:
                found = v
            else:
                break
        return found

    # ------------------------------------------------------------------ snapshots
    def _read_checkpoint(self, version: int) -> CheckpointState:
        return parse_checkpoint(
            self._checkpoint_source(name) for name in self._checkpoints[version]
        )

    def _try_checkpoint(self, version: int) -> CheckpointState | None:
        """A checkpoint's state, or None when it cannot be read (then the commits are replayed)."""
        cached = self._checkpoint_state
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            state = self._read_checkpoint(version)
        except Exception:  # noqa: BLE001 - a half-written or unsupported checkpoint
            return None
        self._checkpoint_state = (version, state)
        return state

    def snapshot(self, version: int | None = None) -> Snapshot:
        """The table at ``version`` (latest when None).

        :raises DeltaLogError: when the version does not exist or cannot be reconstructed.
        """
        while True:
            with self._lock:
                self._refresh()
                latest = self._latest
                if version is None:
                    version = latest
                if version < 0 or version > latest:
                    raise DeltaLogError(
                        f"Version {version} of the table does not exist; the latest version is {latest}"
                    )
                cached = self._snapshots.get(version)
                if cached is not None:
                    self._snapshots.move_to_end(version)
                    return cached
                # one build per version at a time: a request arriving while the warm-up thread builds the
                # same version waits for it instead of doing the same work a second time
                pending = self._building.get(version)
                if pending is None:
                    pending = self._building[version] = threading.Event()
                    base_snap = None
                    for v, snap in self._snapshots.items():
                        if v < version and (base_snap is None or v > base_snap.version):
                            base_snap = snap
                    checkpoint = max((v for v in self._checkpoints if v <= version), default=None)
                    commits = set(self._commits)
                    break
            pending.wait()  # then look again: cached now, or build it here if that build failed
        try:
            return self._build_snapshot(version, base_snap, checkpoint, commits)
        finally:
            with self._lock:
                if self._building.get(version) is pending:
                    del self._building[version]
            pending.set()

    def _build_snapshot(
        self,
        version: int,
        base_snap: Snapshot | None,
        checkpoint: int | None,
        commits: set[int],
    ) -> Snapshot:
        """Reconstruct ``version`` from the closest cached snapshot, checkpoint or commit 0."""
        protocol: dict[str, Any] | None
        metadata: dict[str, Any] | None
        if base_snap is not None and (checkpoint is None or base_snap.version >= checkpoint):
            start = base_snap.version
            protocol, metadata = base_snap.protocol, base_snap.metadata
            files = base_snap.files_by_key()
        elif checkpoint is not None and self._try_checkpoint(checkpoint) is not None:
            start = checkpoint
            protocol, metadata, cp_files = self._try_checkpoint(checkpoint)  # type: ignore[misc]
            files = dict(cp_files)  # the cached checkpoint state must not be mutated
        else:
            if 0 not in commits:
                raise DeltaLogError(
                    f"Version {version} cannot be reconstructed: commit 0 was cleaned up and no "
                    "checkpoint precedes it"
                )
            start = -1
            protocol = metadata = None
            files = {}
        for v in range(start + 1, version + 1):
            if v not in commits:
                raise DeltaLogError(
                    f"Version {version} cannot be reconstructed: commit {v} is missing from the log"
                )
            c = self.commit(v)
            if c.protocol is not None:
                protocol = c.protocol
            if c.metadata is not None:
                metadata = c.metadata
            for r in c.removes:
                files.pop(action_key(r), None)
            for a in c.adds:
                files[action_key(a)] = a
        if protocol is None or metadata is None:
            raise DeltaLogError(
                f"Version {version} of the table has no protocol or metadata; the log is damaged"
            )
        ts = self.commit_timestamp(version) if version in commits else 0
        snap = Snapshot.of(version, ts, protocol, metadata, files)
        with self._lock:
            self._snapshots[version] = snap
            while len(self._snapshots) > _SNAPSHOT_CACHE_SIZE:
                self._snapshots.popitem(last=False)
        return snap

    def file_path(self, raw_path: str) -> str:
        """The absolute local path of a log-relative (URL-encoded) data file path.

        :raises DeltaLogError: when the path escapes the table directory.
        """
        parsed = urlparse(raw_path)
        if parsed.scheme in ("", "file") and not (parsed.scheme == "" and raw_path.startswith("/")):
            rel = unquote(parsed.path) if parsed.scheme == "file" else unquote(raw_path)
        else:
            rel = unquote(raw_path)
        candidate = rel if os.path.isabs(rel) else os.path.join(self.root, rel)
        resolved = os.path.realpath(candidate)
        root = os.path.realpath(self.root)
        if not (resolved == root or resolved.startswith(root + os.sep)):
            raise DeltaLogError("A file of this table lies outside the table directory")
        return resolved


def local_path(location: str) -> str:
    """The local directory of a table location (plain path or ``file://`` URI)."""
    if location.startswith("file://"):
        return unquote(urlparse(location).path)
    if "://" in location:
        raise InvalidArgumentError(
            f"Table location {location} is not on the local filesystem; only local tables are served"
        )
    return os.path.abspath(os.path.expanduser(location))
