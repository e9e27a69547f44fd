"""Table maintenance on the provider: ``TRUNCATE``, ``OPTIMIZE``, ``VACUUM``, ``RESTORE`` and ``SET``.

Each is one deltalake operation (one Delta commit, or for ``VACUUM`` file deletions the log records),
so a failed statement leaves the table as it was.

``VACUUM`` keeps Databricks' retention safety check: a retention shorter than the table's
``delta.deletedFileRetentionDuration`` (default ``interval 7 days``, 168 hours) is refused unless the
session ran ``SET spark.databricks.delta.retentionDurationCheck.enabled = false``. Time travel to a version
whose files a VACUUM deleted fails afterwards, as in Databricks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from helpers.exceptions import InvalidArgumentError
from helpers.provider.ddl import ObjectStatements
from helpers.provider.frames import clean_error, status_frame, utc_timestamp
from helpers.sql.ddl import Optimize, RestoreTable, SetConfig, TruncateTable, Vacuum

__all__ = ["MAINTENANCE_HANDLERS", "RETENTION_CHECK", "Maintenance", "retention_hours"]

#: The session setting that turns off VACUUM's retention safety check.
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
#: Settings ``SET`` accepts (lower-cased) and the values each takes.
_SETTINGS = {RETENTION_CHECK.lower(): ("true", "false")}
_DEFAULT_RETENTION = "interval 7 days"
_UNITS = {
    "week": 168.0,
    "weeks": 168.0,
    "day": 24.0,
    "days": 24.0,
    "hour": 1.0,
    "hours": 1.0,
    "minute": 1 / 60,
    "minutes": 1 / 60,
    "second": 1 / 3600,
    "seconds": 1 / 3600,
}


def retention_hours(value: str) -> float:
    """``interval 7 days`` (Delta's ``deletedFileRetentionDuration``) in hours."""
    words = value.lower().replace("interval", " ").split()
    if len(words) != 2 or words[1] not in _UNITS:
        raise InvalidArgumentError(
            f"cannot read the retention {value!r}; write it like 'interval 7 days'"
        )
    try:
        return float(words[0]) * _UNITS[words[1]]
    except ValueError as exc:
        raise InvalidArgumentError(f"cannot read the retention {value!r}") from exc


class Maintenance(ObjectStatements):
    """Maintenance statements and the session settings they read."""

    @property
    def settings(self) -> dict[str, str]:
        """This provider object's ``SET`` values (lower-cased keys)."""
        store: dict[str, str] | None = getattr(self, "_settings", None)
        if store is None:
            store = {}
            self._settings = store
        return store

    def set_config(self, key: str, value: str) -> pd.DataFrame:
        """``SET key = value`` (for this provider object, like a Databricks session)."""
        allowed = _SETTINGS.get(key.lower())
        if allowed is None:
            raise InvalidArgumentError(
                f"the lab has no setting {key}; it knows {', '.join(k for k in (RETENTION_CHECK,))}"
            )
        text = str(value).lower()
        if text not in allowed:
            raise InvalidArgumentError(f"{key} takes {' or '.join(allowed)}, not {value!r}")
        self.settings[key.lower()] = text
        return pd.DataFrame({"key": [key], "value": [text]})

    def truncate_table(self, name: str) -> pd.DataFrame:
        """``TRUNCATE TABLE name``: remove every row in one commit (the history stays)."""
        info = self._existing_table(name)
        dt = self._delta(info.location, info.name)
        try:
            metrics = dt.delete()
        except Exception as exc:
            raise InvalidArgumentError(f"cannot truncate {info.name}: {clean_error(exc)}") from exc
        n = int(metrics.get("num_deleted_rows", 0))
        return status_frame(f"table {info.name} truncated ({n} row{'s' * (n != 1)} removed)")

    def optimize(
        self, name: str, where: str | None = None, zorder_by: tuple[str, ...] | list[str] = ()
    ) -> pd.DataFrame:
        """``OPTIMIZE name [WHERE partition predicate] [ZORDER BY (cols)]``: compact small files.

        Returns Databricks' ``path`` and ``metrics`` (numFilesAdded, numFilesRemoved, ...).
        """
        info = self._existing_table(name)
        dt = self._delta(info.location, info.name)
        filters = self._partition_filters(dt, where, info.name) if where else None
        try:
            if zorder_by:
                columns = self._columns(dt)
                cols = [self._column(columns, c, info.name) for c in zorder_by]
                metrics = dt.optimize.z_order(cols, partition_filters=filters)
            else:
                metrics = dt.optimize.compact(partition_filters=filters)
        except Exception as exc:
            raise InvalidArgumentError(
                f"OPTIMIZE of {info.name} failed: {clean_error(exc)}"
            ) from exc
        return pd.DataFrame({"path": [info.location], "metrics": [dict(metrics)]})

    def vacuum(
        self, name: str, retain_hours: float | None = None, *, dry_run: bool = False
    ) -> pd.DataFrame:
        """``VACUUM name [RETAIN n HOURS] [DRY RUN]``: delete files no version within the retention needs.

        :raises InvalidArgumentError: the retention is below the table's (Databricks' safety check).
        """
        info = self._existing_table(name)
        dt = self._delta(info.location, info.name)
        configured = dt.metadata().configuration.get(
            "delta.deletedFileRetentionDuration", _DEFAULT_RETENTION
        )
        minimum = retention_hours(configured)
        hours = minimum if retain_hours is None else float(retain_hours)
        if hours < 0:
            raise InvalidArgumentError("VACUUM ... RETAIN takes a number of hours >= 0")
        check = self.settings.get(RETENTION_CHECK.lower(), "true") == "true"
        if check and hours < minimum:
            raise InvalidArgumentError(
                f"requirement failed: Are you sure you would like to vacuum files with such a low retention "
                f"period ({hours:g} hours)? Files that a reader or writer still uses may go. If no operation "
                f"is running on {info.name}, turn the check off with SET {RETENTION_CHECK} = false; "
                f"otherwise use a value not less than {minimum:g} hours"
            )
        try:
            files = dt.vacuum(
                retention_hours=math.ceil(hours),
                dry_run=dry_run,
                enforce_retention_duration=False,
            )
        except Exception as exc:
            raise InvalidArgumentError(f"VACUUM of {info.name} failed: {clean_error(exc)}") from exc
        if dry_run:
            return pd.DataFrame(
                {"path": sorted(f"{info.location}/{f}" for f in files)}, dtype=object
            )
        return pd.DataFrame({"path": [info.location], "num_deleted_files": [len(files)]})

    def restore(
        self, name: str, *, version: int | None = None, timestamp: str | None = None
    ) -> pd.DataFrame:
        """``RESTORE TABLE name TO VERSION AS OF n | TIMESTAMP AS OF 'ts'`` as one new commit."""
        if (version is None) == (timestamp is None):
            raise InvalidArgumentError("RESTORE takes a version or a timestamp")
        info = self._existing_table(name)
        dt = self._delta(info.location, info.name)
        target: Any = version if version is not None else utc_timestamp(str(timestamp))
        if version is not None and not 0 <= version < dt.version():
            raise InvalidArgumentError(
                f"cannot restore {info.name} to version {version}: choose 0 to {dt.version() - 1} "
                "(DESCRIBE HISTORY lists them)"
            )
        try:
            metrics = dt.restore(target)
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot restore {info.name} to {version if version is not None else timestamp}: "
                f"{clean_error(exc)} (a VACUUM may have deleted that version's files)"
            ) from exc
        return pd.DataFrame(
            {
                "num_removed_files": [int(metrics.get("num_removed_file", 0))],
                "num_restored_files": [int(metrics.get("num_restored_file", 0))],
                "version": [self._delta(info.location, info.name).version()],
            }
        )

    def _partition_filters(self, dt: Any, where: str, label: str) -> list[tuple[str, str, Any]]:
        """``col = 'x' AND col2 IN ('a', 'b')`` on partition columns as deltalake partition filters."""
        import sqlglot
        from sqlglot import exp

        from helpers.sql import sqlglot_dialect

        partitions = {c.lower(): c for c in dt.metadata().partition_columns}
        ops: dict[type, str] = {
            exp.EQ: "=",
            exp.NEQ: "!=",
            exp.GT: ">",
            exp.GTE: ">=",
            exp.LT: "<",
            exp.LTE: "<=",
        }
        out: list[tuple[str, str, Any]] = []

        def value(node: Any) -> str:
            if isinstance(node, exp.Literal):
                return str(node.this)
            raise InvalidArgumentError(
                f"OPTIMIZE WHERE compares partition columns with literals, not {node.sql()}"
            )

        def column(node: Any) -> str:
            if not isinstance(node, exp.Column) or node.name.lower() not in partitions:
                raise InvalidArgumentError(
                    f"OPTIMIZE WHERE may only use partition columns of {label} "
                    f"({', '.join(partitions.values()) or 'it has none'})"
                )
            return partitions[node.name.lower()]

        def walk(node: Any) -> None:
            if isinstance(node, exp.And):
                walk(node.this)
                walk(node.expression)
            elif isinstance(node, exp.Paren):
                walk(node.this)
            elif type(node) in ops:
                out.append((column(node.this), ops[type(node)], value(node.expression)))
            elif isinstance(node, exp.In):
                out.append((column(node.this), "in", [value(v) for v in node.expressions]))
            else:
                raise InvalidArgumentError(
                    f"OPTIMIZE WHERE takes comparisons of partition columns joined by AND, not {node.sql()}"
                )

        try:
            tree = sqlglot.parse_one(where, read=sqlglot_dialect())
        except sqlglot.errors.ParseError as exc:
            raise InvalidArgumentError(
                f"cannot read the OPTIMIZE predicate {where!r}: {exc}"
            ) from exc
        walk(tree)
        return out


_Handler = Callable[[Any, Any], pd.DataFrame]

#: Statement class -> how a :class:`Maintenance` runs it (merged into the executor's table).
MAINTENANCE_HANDLERS: dict[type, _Handler] = {
    TruncateTable: lambda p, s: p.truncate_table(s.name),
    Optimize: lambda p, s: p.optimize(s.name, s.where, s.zorder_by),
    Vacuum: lambda p, s: p.vacuum(s.name, s.retain_hours, dry_run=s.dry_run),
    RestoreTable: lambda p, s: p.restore(s.name, version=s.version, timestamp=s.timestamp),
    SetConfig: lambda p, s: p.set_config(s.key, s.value),
}
