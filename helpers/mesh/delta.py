"""Reading the Delta tables behind a product: open one, its schema as the Delta log's JSON, its last commit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from helpers.exceptions import NotADeltaTableError

if TYPE_CHECKING:
    from deltalake import DeltaTable


def open_delta(location: str) -> DeltaTable:
    from deltalake import DeltaTable

    try:
        return DeltaTable(location)
    except Exception as exc:  # deltalake raises TableNotFoundError / OSError flavours
        raise NotADeltaTableError(
            f"no Delta table at {location} ({exc.__class__.__name__}); regenerate the dataset or fix the "
            "share's table location"
        ) from exc


def delta_schema(dt: DeltaTable) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(dt.schema().to_json())
    return schema


def last_commit(dt: DeltaTable) -> datetime:
    entry = dt.history(1)[0]
    return datetime.fromtimestamp(int(entry["timestamp"]) / 1000.0, tz=UTC)
