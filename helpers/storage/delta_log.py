"""Read a Delta table's ``_delta_log`` directly: commits, checkpoints, snapshots, timestamps.

The sharing server needs the raw actions (the exact ``stats`` strings, whole ``add`` actions for the delta
response format, ``cdc`` files and per-commit ``commitInfo`` for the change data feed), which
``deltalake``'s high-level API does not expose. This module reads the log itself:

- commits ``_delta_log/%020d.json`` (one JSON action per line);
- classic checkpoints ``%020d.checkpoint.parquet`` and multi-part ``%020d.checkpoint.%010d.%010d.parquet``
  (deltalake writes them with ``create_checkpoint()`` or ``delta.checkpointInterval``);
- commit timestamps (``commitInfo.inCommitTimestamp``, else ``commitInfo.timestamp``, else the file's mtime),
  made monotonic like the reference server does.

Parsed snapshots are cached per ``(table, version)`` in a small LRU and built incrementally from the
closest cached snapshot or checkpoint, so a 10,000-file table is replayed once, not on every request.
A table directory that is replaced (stage-then-swap by the dataset generators) is detected by the inode
of its ``_delta_log`` and the caches are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from operator import itemgetter
from typing import Any
from urllib.parse import unquote, urlparse

from helpers.exceptions import InvalidArgumentError, NotADeltaTableError

__all__ = [
    "Commit",
    "DeltaLog",
    "DeltaLogError",
    "ObjectStoreDeltaLog",
    "Snapshot",
    "get_log",
    "parse_timestamp",
]

_COMMIT_RE = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT_RE = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")
_SNAPSHOT_CACHE_SIZE = 8
_COMMIT_CACHE_SIZE = 256


def _classify_log_names(names: Iterable[str]) -> tuple[list[int], dict[int, list[str]]]:
    """The commit versions (sorted) and the complete checkpoints (version -> part names) among ``names``."""
    commits: list[int] = []
    parts: dict[int, dict[int, list[str]]] = {}
    for name in names:
        m = _COMMIT_RE.match(name)
        if m:
            commits.append(int(m.group(1)))
            continue
        m = _CHECKPOINT_RE.match(name)
        if m:
            parts.setdefault(int(m.group(1)), {}).setdefault(int(m.group(3) or 1), []).append(name)
    commits.sort()
    checkpoints = {
        v: sorted(names_)
        for v, by_total in parts.items()
        for total, names_ in by_total.items()
        if len(names_) == total  # only complete checkpoints
    }
    return commits, checkpoints


class DeltaLogError(InvalidArgumentError):
    """The log cannot answer (missing commit, vacuumed files, unreadable checkpoint).

    A caller mistake or a data problem, never a server bug: the server maps it to a 400.
    """


def parse_timestamp(text: str, what: str = "timestamp") -> int:
    """Parse a protocol timestamp into epoch milliseconds.

    Accepts ISO 8601 with ``Z`` or an offset (``2022-01-01T00:00:00Z``, ``...+02:00``) and
    ``yyyy-mm-dd hh:mm:ss[.fff]`` read as UTC, like the reference server.

    :raises InvalidArgumentError: for anything else (a date alone, an epoch number, garbage).
    """
    raw = (text or "").strip()
    dt: datetime | None = None
    if raw and ("T" in raw or " " in raw):
        candidate = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
        try:
            dt = datetime.fromisoformat(candidate)
        except ValueError:
            dt = None
        if dt is not None and dt.tzinfo is None:
            if "T" in raw:  # ISO form must carry an offset (protocol "Timestamp Format")
                dt = None
            else:
                dt = dt.replace(tzinfo=UTC)
    if dt is None:
        raise InvalidArgumentError(
            f"Invalid {what}: {text!r}; expected ISO 8601 in UTC such as 2022-01-01T00:00:00Z "
            "(or with an offset such as +02:00)"
        )
    return int(dt.timestamp() * 1000)


def format_timestamp(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC (for messages)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Commit:
    """One commit file's actions, grouped by kind.

    :param version: the commit version.
    :param adds: ``add`` actions (raw dicts, ``partitionValues`` always a dict).
    :param removes: ``remove`` actions.
    :param cdcs: ``cdc`` actions (change data files).
    :param metadata: the ``metaData`` action, if the commit changed it.
    :param protocol: the ``protocol`` action, if the commit changed it.
    :param commit_info: the ``commitInfo`` action, if present.
    """

    version: int
    adds: tuple[dict[str, Any], ...] = ()
    removes: tuple[dict[str, Any], ...] = ()
    cdcs: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] | None = None
    protocol: dict[str, Any] | None = None
    commit_info: dict[str, Any] | None = None

    @property
    def operation(self) -> str:
        """The ``commitInfo.operation`` (``WRITE``, ``MERGE``...) or ``""``."""
        return str((self.commit_info or {}).get("operation") or "")

    def is_empty_merge(self) -> bool:
        """A MERGE that changed no rows: the reference server emits no file lines for it."""
        if self.operation.upper() != "MERGE":
            return False
        metrics = (self.commit_info or {}).get("operationMetrics") or {}
        keys = (
            ("numTargetRowsInserted", "num_target_rows_inserted"),
            ("numTargetRowsUpdated", "num_target_rows_updated"),
            ("numTargetRowsDeleted", "num_target_rows_deleted"),
        )
        seen = False
        for names in keys:
            for name in names:
                if name in metrics:
                    seen = True
                    try:
                        if int(metrics[name]) != 0:
                            return False
                    except (TypeError, ValueError):
                        return False
        return seen


@dataclass(frozen=True)
class Snapshot:
    """The state of a table at one version.

    :param version: the version.
    :param timestamp: that version's commit timestamp (epoch ms).
    :param protocol: the raw ``protocol`` action.
    :param metadata: the raw ``metaData`` action.
    :param files: the active ``add`` actions, sorted by path (stable across rebuilds, for paging).
    """

    version: int
    timestamp: int
    protocol: dict[str, Any]
    metadata: dict[str, Any]
    files: tuple[dict[str, Any], ...]
    _paths: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    # the active files by action key: the next version is built from a copy of it (no re-keying)
    _by_key: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def paths(self) -> frozenset[str]:
        """The (raw) paths of the active files."""
        return self._paths

    @property
    def partition_columns(self) -> list[str]:
        return list(self.metadata.get("partitionColumns") or [])

    @property
    def configuration(self) -> dict[str, str]:
        return dict(self.metadata.get("configuration") or {})

    @property
    def cdf_enabled(self) -> bool:
        return str(self.configuration.get("delta.enableChangeDataFeed", "")).lower() == "true"

    @cached_property
    def size(self) -> int:
        """Total bytes of the active files (computed once per snapshot)."""
        return sum(int(f.get("size") or 0) for f in self.files)

    @property
    def min_reader_version(self) -> int:
        return int(self.protocol.get("minReaderVersion") or 1)

    @property
    def reader_features(self) -> list[str]:
        return list(self.protocol.get("readerFeatures") or [])


_by_path = itemgetter("path")


def _action_key(action: dict[str, Any]) -> str:
    """The identity of a file action: its path plus the deletion vector's unique id, if any."""
    dv = action.get("deletionVector")
    if dv:
        return (
            f"{action['path']}#{dv.get('storageType')}{dv.get('pathOrInlineDv')}@{dv.get('offset')}"
        )
    return action["path"]


def _map_to_dict(value: Any) -> dict[str, Any]:
    """pyarrow returns Parquet maps as lists of (key, value) tuples."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {k: v for k, v in value}


def _clean_action(action: dict[str, Any], map_fields: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in action.items():
        if value is None:
            continue
        if key in map_fields:
            value = _map_to_dict(value)
        out[key] = value
    return out


def _fast_action(action: dict[str, Any]) -> dict[str, Any]:
    """A file action from a JSON commit: used as parsed unless a field needs normalising (hot path)."""
    if isinstance(action.get("partitionValues"), dict):
        return action
    return _clean_action(action, ("partitionValues", "tags"))


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
        self._checkpoint_state: tuple[int, Any] | None = None
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
            commits, checkpoints = _classify_log_names(entry.name for entry in it)
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
        lines = [line for line in (raw.strip() for raw in data.splitlines()) if line]
        try:  # one parse for the whole commit: a 10,000-file commit parses ~2x faster than line by line
            actions = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            actions = None
        if (
            not isinstance(actions, list)
            or len(actions) != len(lines)
            or not all(type(a) is dict for a in actions)
        ):  # a damaged line: parse line by line, for the same result or error as before
            actions = [json.loads(line) for line in lines]
        return actions

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
                adds.append(_fast_action(action["add"]))
            elif "remove" in action:
                removes.append(_fast_action(action["remove"]))
            elif "cdc" in action:
                cdcs.append(_fast_action(action["cdc"]))
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
    def _read_checkpoint(
        self, version: int
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, dict[str, Any]]]:
        import pyarrow.parquet as pq

        protocol = metadata = None
        files: dict[str, dict[str, Any]] = {}
        for name in self._checkpoints[version]:
            pf = pq.ParquetFile(self._checkpoint_source(name))
            wanted = [c for c in ("add", "metaData", "protocol") if c in pf.schema_arrow.names]
            table = pf.read(columns=wanted)
            if "protocol" in wanted:
                for row in table.column("protocol").drop_null().to_pylist():
                    protocol = _clean_action(row, ())
            if "metaData" in wanted:
                for row in table.column("metaData").drop_null().to_pylist():
                    md = _clean_action(row, ("configuration",))
                    fmt = dict(md.get("format") or {"provider": "parquet"})
                    fmt["options"] = _map_to_dict(fmt.get("options"))
                    md["format"] = fmt
                    md.setdefault("configuration", {})
                    metadata = md
            if "add" in wanted:
                for row in table.column("add").drop_null().to_pylist():
                    add = _clean_action(row, ("partitionValues", "tags"))
                    if "stats" not in add and row.get("stats_parsed") is not None:
                        add["stats"] = json.dumps(row["stats_parsed"], separators=(",", ":"))
                    add.pop("stats_parsed", None)
                    add.pop("partitionValues_parsed", None)
                    files[_action_key(add)] = add
        return protocol, metadata, files

    def _try_checkpoint(
        self, version: int
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, dict[str, Any]]] | None:
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
            files = (
                dict(base_snap._by_key)
                if len(base_snap._by_key) == len(base_snap.files)
                else {_action_key(f): f for f in base_snap.files}
            )
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
                files.pop(_action_key(r), None)
            for a in c.adds:
                files[_action_key(a)] = a
        if protocol is None or metadata is None:
            raise DeltaLogError(
                f"Version {version} of the table has no protocol or metadata; the log is damaged"
            )
        ts = self.commit_timestamp(version) if version in commits else 0
        snap = Snapshot(
            version=version,
            timestamp=ts,
            protocol=protocol,
            metadata=metadata,
            files=tuple(sorted(files.values(), key=_by_path)),  # stable for paging
            _paths=frozenset(map(_by_path, files.values())),
            _by_key=files,
        )
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


class ObjectStoreDeltaLog(DeltaLog):
    """Reader of the ``_delta_log`` of a table on S3-compatible storage (``s3://bucket/prefix``).

    The log is listed and read through :class:`pyarrow.fs.S3FileSystem` with the settings of
    :class:`helpers.storage.s3.S3Settings` (the process environment, like ``deltalake``). An object store
    has no directory inode or cheap ``stat``: the listing is re-read at most every
    ``_LIST_TTL_SECONDS``, and a table rewritten in place is detected by its oldest log file changing.

    :param location: ``s3://bucket/path/to/table``.
    :param settings: the store settings (default: from the environment).
    """

    is_object_store = True
    _LIST_TTL_SECONDS = 1.0

    def __init__(self, location: str, settings: Any = None) -> None:
        from helpers.storage.s3 import S3Settings, split_s3_uri

        super().__init__("file:///")  # the local fields; replaced below
        self.location = location
        self.bucket, self.prefix = split_s3_uri(location)
        self.settings = settings if settings is not None else S3Settings.from_env()
        self.fs = self.settings.filesystem()
        self.root = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        self.log_dir = f"{self.root}/_delta_log"
        self._listed_at = -1.0
        self._mtimes: dict[str, int] = {}

    def _commit_path(self, version: int) -> str:
        return f"{self.log_dir}/{version:020d}.json"

    def _refresh(self) -> None:
        import time

        from pyarrow import fs as pafs

        now = time.monotonic()
        if self._latest >= 0 and now - self._listed_at < self._LIST_TTL_SECONDS:
            return
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.log_dir, allow_not_found=True))
        except OSError as exc:
            raise DeltaLogError(
                f"Cannot list {self.location}/_delta_log on the object store ({exc}); check "
                "AWS_ENDPOINT_URL and the credentials in the server's environment"
            ) from None
        mtimes: dict[str, int] = {}
        names: list[str] = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            names.append(info.base_name)
            mtimes[info.path] = int(info.mtime.timestamp() * 1000) if info.mtime else 0
        commits, checkpoints = _classify_log_names(names)
        if not commits and not checkpoints:
            raise NotADeltaTableError(
                f"{self.location} is not a Delta table (no _delta_log objects); write the table "
                "there first or register the right s3:// path"
            )
        oldest = self._oldest_log_file(commits, checkpoints)
        first = (hash(oldest), mtimes.get(oldest, 0)) if oldest else None
        self._mtimes = mtimes
        self._adopt_listing(
            first,
            commits,
            checkpoints,
            f"{self.location} has no complete commit in _delta_log; write the table again",
        )
        self._listed_at = now

    def _read_bytes(self, path: str) -> bytes:
        try:
            with self.fs.open_input_stream(path) as fh:
                return fh.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not exist" in str(exc).lower() or "NoSuchKey" in str(exc):
                raise FileNotFoundError(path) from None
            raise DeltaLogError(f"Cannot read {path} from the object store: {exc}") from None

    def _mtime_ms(self, path: str) -> int:
        return self._mtimes.get(path, 0)

    def _raw_timestamp(self, version: int) -> int:
        with self._lock:
            cached = self._raw_ts.get(version)
        if cached is not None:
            return cached
        self.commit(version)  # one GET: parses the commit and records its timestamp
        with self._lock:
            return self._raw_ts.get(version, 0)

    def _checkpoint_source(self, name: str) -> Any:
        import io

        return io.BytesIO(self._read_bytes(f"{self.log_dir}/{name}"))

    def object_key(self, raw_path: str) -> tuple[str, str]:
        """(bucket, key) of a log-relative (URL-encoded) data file path.

        :raises DeltaLogError: when the path leaves the table's prefix.
        """
        parsed = urlparse(raw_path)
        if parsed.scheme:
            if parsed.scheme.lower() not in ("s3", "s3a") or parsed.netloc != self.bucket:
                raise DeltaLogError("A file of this table lies outside the table directory")
            key = unquote(parsed.path).lstrip("/")
        else:
            rel = unquote(raw_path)
            key = f"{self.prefix}/{rel.lstrip('/')}" if self.prefix else rel.lstrip("/")
        parts = key.split("/")
        inside = not self.prefix or key.startswith(self.prefix + "/")
        if not inside or ".." in parts or "." in parts:
            raise DeltaLogError("A file of this table lies outside the table directory")
        return self.bucket, key

    def file_path(self, raw_path: str) -> str:
        """Object-store files have no local path: the server hands out pre-signed URLs instead."""
        raise DeltaLogError("A file of an object-store table has no local path")


def has_delta_log(location: str, settings: Any = None) -> bool:
    """True when the ``s3://`` location holds a ``_delta_log`` with at least one commit or checkpoint."""
    try:
        ObjectStoreDeltaLog(location, settings)._refresh()
    except NotADeltaTableError:
        return False
    return True


def local_path(location: str) -> str:
    """The local directory of a table location (plain path or ``file://`` URI)."""
    if location.startswith("file://"):
        return unquote(urlparse(location).path)
    if "://" in location:
        raise InvalidArgumentError(
            f"Table location {location} is not on the local filesystem; only local tables are served"
        )
    return os.path.abspath(os.path.expanduser(location))


_LOGS: OrderedDict[str, DeltaLog] = OrderedDict()
_LOGS_LOCK = threading.Lock()
_LOG_CACHE_SIZE = 64


def get_log(location: str) -> DeltaLog:
    """The shared :class:`DeltaLog` of a table location (LRU over locations)."""
    key = location
    with _LOGS_LOCK:
        log = _LOGS.get(key)
        if log is None:
            from helpers.storage.s3 import is_s3

            log = ObjectStoreDeltaLog(location) if is_s3(location) else DeltaLog(location)
            _LOGS[key] = log
            while len(_LOGS) > _LOG_CACHE_SIZE:
                _LOGS.popitem(last=False)
        else:
            _LOGS.move_to_end(key)
        return log
