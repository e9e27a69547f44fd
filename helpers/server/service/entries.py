"""The per-table cache of file entries: each active file's line template and token path part.

The per-file work (line template: JSON encoding of partition values and stats, file id; the base64 path
part of the token) does not depend on the table version, so it is kept per table location and format
across versions: after a commit only the files it added are encoded again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from helpers.catalog import SharedTable
from helpers.server.ndjson import Entry, EntrySet
from helpers.server.protocol import FileLineTemplate
from helpers.storage.delta_log import DeltaLog, Snapshot

__all__ = ["FileEntryCache"]

_TEMPLATE_CACHE_SIZE = 32
_FILE_CACHE_SIZE = 32


class FileEntryCache:
    """(add, line template, path part of the file token) of every active file of a snapshot, cached.

    :param token_path: a file path's part of the file token (:meth:`Signer.token_path`).
    """

    def __init__(self, token_path: Callable[[str], str]) -> None:
        self._token_path = token_path
        self._templates: OrderedDict[tuple[Any, ...], tuple[Snapshot, EntrySet]] = OrderedDict()
        self._templates_lock = threading.Lock()
        # (table location, format) -> {path: entry} of the last latest-version build (LRU)
        self._file_cache: OrderedDict[tuple[Any, ...], dict[str, Entry]] = OrderedDict()
        self._entries_building: dict[tuple[Any, ...], threading.Event] = {}

    def get(
        self, table: SharedTable, snapshot: Snapshot, log_: DeltaLog, fmt: str, time_travel: bool
    ) -> EntrySet:
        """The entries of ``snapshot`` in ``fmt``, built once per key.

        A cached entry is reused only for the very same ``add`` action (identity, else equality).
        """
        key = (
            id(snapshot),
            fmt,
            time_travel,
            table.id,
            table.share.lower(),
            table.schema.lower(),
            table.name.lower(),
        )
        while True:
            with self._templates_lock:
                hit = self._templates.get(key)
                if hit is not None and hit[0] is snapshot:
                    self._templates.move_to_end(key)
                    return hit[1]
                # one build per key at a time (a request arriving during the warm-up waits for it)
                pending = self._entries_building.get(key)
                if pending is None:
                    pending = self._entries_building[key] = threading.Event()
                    break
            pending.wait()
        try:
            return self._build(key, snapshot, log_, fmt, time_travel)
        finally:
            with self._templates_lock:
                if self._entries_building.get(key) is pending:
                    del self._entries_building[key]
            pending.set()

    def _build(
        self,
        key: tuple[Any, ...],
        snapshot: Snapshot,
        log_: DeltaLog,
        fmt: str,
        time_travel: bool,
    ) -> EntrySet:
        """Build (and cache under ``key``) the entries of :meth:`get`, reusing unchanged files'."""
        version = snapshot.version if time_travel else None
        timestamp = snapshot.timestamp if time_travel else None
        # time-travel lines carry the version and timestamp: nothing to share with other versions, so
        # only the latest-version file lines are kept per table (which bounds the memory as well)
        fkey = (log_.location, fmt)
        known: dict[str, Entry] = {}
        if not time_travel:
            with self._templates_lock:
                known = self._file_cache.get(fkey) or {}
        build = FileLineTemplate.build
        token_path = self._token_path
        fresh: dict[str, Entry] = {}
        entries: list[Entry] = []
        for add in snapshot.files:
            path = add["path"]
            entry = known.get(path)
            if entry is None or (entry[0] is not add and entry[0] != add):
                part = token_path(path)
                tmpl = build("file", fmt, add, version=version, timestamp=timestamp)
                entry = (add, tmpl, part, part.encode("ascii"))
            fresh[path] = entry
            entries.append(entry)
        entry_set = EntrySet(entries)
        with self._templates_lock:
            if not time_travel:
                # only the files of the last build are kept per table: removed files drop out
                self._file_cache[fkey] = fresh
                self._file_cache.move_to_end(fkey)
                while len(self._file_cache) > _FILE_CACHE_SIZE:
                    self._file_cache.popitem(last=False)
            self._templates[key] = (snapshot, entry_set)
            while len(self._templates) > _TEMPLATE_CACHE_SIZE:
                self._templates.popitem(last=False)
        return entry_set
