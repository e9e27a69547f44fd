"""The retention policy of a product, evaluated on each output table's Delta history: does the table keep
what the product promises (``SLA.time_travel_days``: consumers may read any version of that window, by time
travel or the change data feed)?

Per table, from its ``_delta_log``:

- the configured retention: ``delta.deletedFileRetentionDuration`` (how long VACUUM keeps removed data
  files, default 7 days) and ``delta.logRetentionDuration`` (how long log entries are kept, default 30
  days);
- the retention VACUUM actually used: the smallest ``specifiedRetentionMillis`` of the ``VACUUM START``
  commits in the history (a ``VACUUM ... RETAIN 0 HOURS`` with the safety check off deletes history at once);
- the evidence itself: the version a consumer is promised at the start of the window (the last commit at or
  before ``now - window``, else the oldest) must still be readable: its commit is in the log and every data
  file of its snapshot exists.

The table keeps its promise when the effective retention (the smallest of the three) covers the window and
that version is readable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from helpers.exceptions import SharelabError

__all__ = ["DEFAULT_FILE_RETENTION", "DEFAULT_LOG_RETENTION", "TableRetention", "table_retention"]

DEFAULT_FILE_RETENTION = "interval 7 days"
DEFAULT_LOG_RETENTION = "interval 30 days"


@dataclass(frozen=True)
class TableRetention:
    """The retention of one output table against a promised window (hours)."""

    table: str
    window_hours: float
    file_retention_hours: float
    log_retention_hours: float
    vacuum_retention_hours: float | None
    window_version: int | None
    readable: bool
    missing_files: int
    detail: str

    @property
    def effective_hours(self) -> float:
        values = [self.file_retention_hours, self.log_retention_hours]
        if self.vacuum_retention_hours is not None:
            values.append(self.vacuum_retention_hours)
        return min(values)

    @property
    def covered(self) -> bool:
        return self.effective_hours >= self.window_hours and self.readable

    def evidence(self) -> str:
        vac = (
            f", VACUUM ran with {_h(self.vacuum_retention_hours)} retention"
            if self.vacuum_retention_hours is not None
            else ", never vacuumed"
        )
        return (
            f"{self.table}: file retention {_h(self.file_retention_hours)}, log retention "
            f"{_h(self.log_retention_hours)}{vac} vs promised {_h(self.window_hours)}; {self.detail}"
        )


def _h(hours: float) -> str:
    return f"{hours / 24:g} d" if hours >= 24 and hours % 24 == 0 else f"{hours:g} h"


def _hours(value: str) -> float:
    from helpers.provider.maintenance import retention_hours

    return retention_hours(value)


def table_retention(
    alias: str, location: str, window_hours: float, now: datetime
) -> TableRetention:
    """Evaluate table ``alias`` at ``location`` against a promised window of ``window_hours``."""
    from helpers.storage.delta_log import get_log

    log_ = get_log(location)
    latest = log_.latest_version()
    config = log_.snapshot(latest).configuration
    file_h = _hours(config.get("delta.deletedFileRetentionDuration", DEFAULT_FILE_RETENTION))
    log_h = _hours(config.get("delta.logRetentionDuration", DEFAULT_LOG_RETENTION))
    stamps = log_.timestamps()
    vacuum_h: float | None = None
    for v in sorted(stamps):
        info = log_.commit(v).commit_info or {}
        if str(info.get("operation", "")).upper() == "VACUUM START":
            params = info.get("operationParameters") or {}
            raw = params.get("specifiedRetentionMillis") or params.get("defaultRetentionMillis")
            if raw is not None:
                hours = int(raw) / 3_600_000
                vacuum_h = hours if vacuum_h is None else min(vacuum_h, hours)
    start_ms = int((now - timedelta(hours=window_hours)).timestamp() * 1000)
    before = [v for v, ts in stamps.items() if ts <= start_ms]
    oldest = min(stamps) if stamps else latest
    version = max(before) if before else oldest
    when = datetime.fromtimestamp(stamps.get(version, 0) / 1000, tz=UTC) if stamps else None
    missing, readable, detail = 0, True, ""
    if not before and oldest > 0:
        readable = False
        detail = f"the log starts at version {oldest}: older versions of the window are gone"
    else:
        try:
            snap = log_.snapshot(version)
            if not log_.is_object_store:
                missing = sum(
                    not os.path.isfile(log_.file_path(str(f["path"]))) for f in snap.files
                )
            readable = missing == 0
            stamp = f" ({when:%Y-%m-%d %H:%M} UTC)" if when else ""
            detail = (
                f"version {version}{stamp} at the window start is readable"
                if readable
                else f"version {version}{stamp} at the window start lost {missing} of "
                f"{len(snap.files)} data file(s) to VACUUM"
            )
        except SharelabError as exc:
            readable = False
            detail = f"version {version} at the window start cannot be read: {exc}"
    return TableRetention(
        alias, window_hours, file_h, log_h, vacuum_h, version, readable, missing, detail
    )
