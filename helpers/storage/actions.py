"""The Delta log's data: commits, snapshots, raw actions, log file names and protocol timestamps.

Pure parsing, no I/O: :mod:`helpers.storage.local_log` and :mod:`helpers.storage.object_log` read the
files and build :class:`Commit` and :class:`Snapshot` objects with these helpers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from operator import itemgetter
from typing import Any

from helpers.exceptions import InvalidArgumentError

__all__ = [
    "CheckpointState",
    "Commit",
    "DeltaLogError",
    "Snapshot",
    "action_key",
    "classify_log_names",
    "fast_action",
    "format_timestamp",
    "parse_checkpoint",
    "parse_commit_lines",
    "parse_timestamp",
]

_COMMIT_RE = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT_RE = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")

CheckpointState = tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, dict[str, Any]]]
"""(protocol, metaData, active files by :func:`action_key`) read from a checkpoint."""


def classify_log_names(names: Iterable[str]) -> tuple[list[int], dict[int, list[str]]]:
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

    @classmethod
    def of(
        cls,
        version: int,
        timestamp: int,
        protocol: dict[str, Any],
        metadata: dict[str, Any],
        files: dict[str, dict[str, Any]],
    ) -> Snapshot:
        """The snapshot of the active ``files`` (by :func:`action_key`), sorted by path for paging."""
        return cls(
            version=version,
            timestamp=timestamp,
            protocol=protocol,
            metadata=metadata,
            files=tuple(sorted(files.values(), key=_by_path)),  # stable for paging
            _paths=frozenset(map(_by_path, files.values())),
            _by_key=files,
        )

    def files_by_key(self) -> dict[str, dict[str, Any]]:
        """A fresh dict of the active files by :func:`action_key` (the next version is built in it)."""
        if len(self._by_key) == len(self.files):
            return dict(self._by_key)
        return {action_key(f): f for f in self.files}


_by_path = itemgetter("path")


def action_key(action: dict[str, Any]) -> str:
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


def fast_action(action: dict[str, Any]) -> dict[str, Any]:
    """A file action from a JSON commit: used as parsed unless a field needs normalising (hot path)."""
    if isinstance(action.get("partitionValues"), dict):
        return action
    return _clean_action(action, ("partitionValues", "tags"))


def parse_commit_lines(data: bytes) -> list[dict[str, Any]]:
    """The actions of a commit file's content (one JSON object per non-empty line)."""
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


def parse_checkpoint(sources: Iterable[Any]) -> CheckpointState:
    """Read the parts of one checkpoint (whatever :class:`pyarrow.parquet.ParquetFile` opens)."""
    import pyarrow.parquet as pq

    protocol = metadata = None
    files: dict[str, dict[str, Any]] = {}
    for source in sources:
        pf = pq.ParquetFile(source)
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
                files[action_key(add)] = add
    return protocol, metadata, files
