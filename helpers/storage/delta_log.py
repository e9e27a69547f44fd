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

Modules: :mod:`.actions` (commits, snapshots, action parsing, timestamps), :mod:`.local_log` (the reader
of local tables, with its caches), :mod:`.object_log` (S3-compatible tables); this module re-exports their
public names and keeps the one :class:`DeltaLog` per table location (:func:`get_log`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from helpers.storage.actions import (
    Commit,
    DeltaLogError,
    Snapshot,
    format_timestamp,
    parse_timestamp,
)
from helpers.storage.local_log import DeltaLog, local_path
from helpers.storage.object_log import ObjectStoreDeltaLog, has_delta_log
from helpers.storage.s3 import is_s3

__all__ = [
    "Commit",
    "DeltaLog",
    "DeltaLogError",
    "ObjectStoreDeltaLog",
    "Snapshot",
    "format_timestamp",
    "get_log",
    "has_delta_log",
    "local_path",
    "parse_timestamp",
]

_LOGS: OrderedDict[str, DeltaLog] = OrderedDict()
_LOGS_LOCK = threading.Lock()
_LOG_CACHE_SIZE = 64


def get_log(location: str) -> DeltaLog:
    """The shared :class:`DeltaLog` of a table location (LRU over locations)."""
    key = location
    with _LOGS_LOCK:
        log = _LOGS.get(key)
        if log is None:
            log = ObjectStoreDeltaLog(location) if is_s3(location) else DeltaLog(location)
            _LOGS[key] = log
            while len(_LOGS) > _LOG_CACHE_SIZE:
                _LOGS.popitem(last=False)
        else:
            _LOGS.move_to_end(key)
        return log
