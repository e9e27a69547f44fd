"""Shared views materialized per recipient: a real Delta table of that recipient's rows and columns.

``<lab home>/views/<view id>/<recipient id>/table`` is a Delta table the server writes with deltalake and
then serves like any shared table (metadata, version, query, both response formats, signed downloads).
Each materialization is cached under a key made of the view's query, the values of the recipient
properties the view uses and the (location, version) of every source table, so:

- a second read with nothing changed costs one version check per source table (what a table read costs);
- a provider commit to a source table (or a change of the recipient's properties, or CREATE OR REPLACE
  VIEW) is seen by the next read, which runs the view again;
- the view's Delta version moves only when the result's bytes changed (the result is ordered by every
  column, so equal results have equal digests): a commit that does not touch this recipient's rows
  leaves its version alone.

``state.json`` beside the table keeps the key and the digest, so a restarted server reuses its tables.
The directory is private (0700): it holds recipient-specific data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.catalog import Catalog, Recipient
from helpers.catalog.views import ViewInfo
from helpers.provider.viewsql import run_view_query
from helpers.storage.delta_log import get_log

__all__ = ["Materialization", "ViewMaterializer"]

_STATE = "state.json"


@dataclass(frozen=True)
class Materialization:
    """Where a (view, recipient) result lives, and whether this call (re)built it."""

    path: str
    built: bool
    committed: bool


def _digest(table: Any) -> str:
    import pyarrow as pa

    sink = io.BytesIO()
    combined = table.combine_chunks()
    with pa.ipc.new_stream(sink, combined.schema) as writer:
        writer.write_table(combined)
    return hashlib.sha256(sink.getvalue()).hexdigest()


class ViewMaterializer:
    """Builds and caches per-recipient Delta tables of shared views under ``root``.

    :attr builds: how many times a view query ran (for tests and the benchmark).
    :attr commits: how many Delta versions were written.
    """

    def __init__(self, root: Path, catalog: Catalog, keep_hours: int = 2) -> None:
        self.root = root
        self.catalog = catalog
        self.builds = 0
        self.commits = 0
        #: replaced data files are kept this long (at least the signed URLs' lifetime), then vacuumed
        self.keep_hours = keep_hours
        self._memo: dict[tuple[str, str], tuple[str, str]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _vacuum(self, table_path: Path) -> None:
        """Delete the data files replaced more than :attr:`keep_hours` ago (signed URLs outlive a commit)."""
        _vacuum_files(table_path, self.keep_hours)

    def _dir(self, view: ViewInfo, recipient: Recipient) -> Path:
        return self.root / view.id / recipient.id

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def source_versions(self, view: ViewInfo) -> dict[str, tuple[str, int]]:
        """``source name (lower case) -> (location, latest version)`` of the view's tables now."""
        out: dict[str, tuple[str, int]] = {}
        for name in view.sources:
            location = self.catalog.get_table(name).location
            out[name.lower()] = (location, get_log(location).latest_version())
        return out

    @staticmethod
    def cache_key(
        view: ViewInfo, properties: Mapping[str, Any], sources: Mapping[str, tuple[str, int]]
    ) -> str:
        props = {str(k).lower(): v for k, v in properties.items()}
        used = {p: props.get(p) for p in view.properties}
        text = json.dumps(
            [view.id, view.query, used, sorted(sources.items())], sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def current_path(self, view: ViewInfo, recipient: Recipient) -> str | None:
        """The table last materialized for this recipient (no rebuild), or None when there is none."""
        table = self._dir(view, recipient) / "table"
        return str(table) if (table / "_delta_log").is_dir() else None

    def materialize(self, view: ViewInfo, recipient: Recipient) -> Materialization:
        """The recipient's Delta table of ``view``, rebuilt when its key changed (see the module doc)."""
        sources = self.source_versions(view)
        key = self.cache_key(view, recipient.properties, sources)
        memo_key = (view.id, recipient.id)
        hit = self._memo.get(memo_key)
        if hit is not None and hit[0] == key:
            return Materialization(hit[1], built=False, committed=False)
        with self._lock(memo_key):
            hit = self._memo.get(memo_key)
            if hit is not None and hit[0] == key:
                return Materialization(hit[1], built=False, committed=False)
            result = self._build(view, recipient, key, sources)
            self._memo[memo_key] = (key, result.path)
            return result

    def _build(
        self,
        view: ViewInfo,
        recipient: Recipient,
        key: str,
        sources: Mapping[str, tuple[str, int]],
    ) -> Materialization:
        from deltalake import write_deltalake

        folder = self._dir(view, recipient)
        table_path = folder / "table"
        state_path = folder / _STATE
        state = _read_state(state_path)
        exists = (table_path / "_delta_log").is_dir()
        if exists and state.get("key") == key:
            return Materialization(str(table_path), built=False, committed=False)
        self.builds += 1
        result = run_view_query(self.catalog, view.query, recipient.properties, versions=sources)
        digest = _digest(result)
        committed = False
        if not exists or state.get("digest") != digest:
            _private_dirs(self.root, folder)
            write_deltalake(
                str(table_path),
                result,
                mode="overwrite",
                schema_mode="overwrite",
                name=view.name.split(".")[-1],
                description=view.comment,
            )
            self.commits += 1
            committed = True
            self._vacuum(table_path)
        _write_state(state_path, {"key": key, "digest": digest, "view": view.name})
        return Materialization(str(table_path), built=True, committed=committed)


def _vacuum_files(table_path: Path, retention_hours: int) -> None:
    from deltalake import DeltaTable

    try:
        DeltaTable(str(table_path)).vacuum(
            retention_hours=retention_hours, enforce_retention_duration=False, dry_run=False
        )
    except Exception:  # noqa: BLE001 - clean-up only; a failure leaves old files behind
        pass


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(dict(state)))
    os.replace(tmp, path)


def _private_dirs(root: Path, folder: Path) -> None:
    """Create ``folder`` (under ``root``) with every new directory 0700."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        current.mkdir(mode=0o700, exist_ok=True)
