"""The catalog's one clock: every catalog timestamp (and the provider's and the mesh's) comes from here.

Timestamps are stored as epoch seconds (REAL) and shown as aware UTC datetimes. Tests move the clock by
replacing :func:`now` on this module (``monkeypatch.setattr(helpers.catalog.clock, "now", fake)``), so
callers must look it up at call time (``clock.now()``), never bind it with ``from ... import now``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import overload

__all__ = ["from_epoch", "now", "to_epoch", "utcnow"]


def now() -> float:
    """Current time in epoch seconds (one function, so tests can move the clock)."""
    return time.time()


def utcnow() -> datetime:
    """Current time as an aware UTC datetime (from :func:`now`)."""
    return datetime.fromtimestamp(now(), tz=UTC)


@overload
def from_epoch(ts: float) -> datetime: ...
@overload
def from_epoch(ts: None) -> None: ...
def from_epoch(ts: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def to_epoch(value: datetime | float | None) -> float | None:
    """A datetime or a number as epoch seconds (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # naive datetimes are taken as UTC, like the protocol's timestamps
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)
