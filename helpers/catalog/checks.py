"""Checks and coercions of the values the catalog's calls accept (comments, properties, partition filters)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from helpers.catalog.models import PartitionClause
from helpers.catalog.names import MAX_NAME_LENGTH
from helpers.exceptions import InvalidArgumentError, NotADeltaTableError

__all__ = [
    "check_comment",
    "coerce_partition",
    "coerce_properties",
    "stable_id",
    "validate_partition",
    "validate_start_version",
]

_STABLE_NS = uuid.UUID("6f1b1c1e-5a9e-4c38-9a65-1d8a6f0c2b7d")


def stable_id(share_id: str, schema: str, table: str) -> str:
    """The id of a shared table: the same for the same ``share_id`` (the caller folds in the share entry,
    so a table removed and added again gets a new id), schema and table (case-insensitive)."""
    return str(uuid.uuid5(_STABLE_NS, f"{share_id}/{schema.lower()}.{table.lower()}"))


def check_comment(comment: object) -> None:
    """A comment is None or text under 65536 characters. :raises InvalidArgumentError:"""
    if comment is not None and not isinstance(comment, str):
        raise InvalidArgumentError(f"comment must be text, got {type(comment).__name__}")
    if isinstance(comment, str) and len(comment) > 65536:
        raise InvalidArgumentError(
            f"comment is {len(comment)} characters long; keep it under 65536"
        )


def coerce_properties(properties: Mapping[str, Any] | None) -> dict[str, str]:
    """Recipient properties as text values with unique (case-insensitive) names. :raises InvalidArgumentError:"""
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise InvalidArgumentError("recipient properties must be a mapping of names to values")
    out: dict[str, str] = {}
    for key, value in properties.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME_LENGTH:
            raise InvalidArgumentError(
                f"recipient property name {key!r} must be 1 to {MAX_NAME_LENGTH} characters of text"
            )
        if any(k.lower() == key.lower() for k in out):
            raise InvalidArgumentError(
                f"recipient property {key!r} is given twice (names are case-insensitive)"
            )
        if value is None or isinstance(value, dict | list | tuple | set):
            raise InvalidArgumentError(
                f"recipient property {key!r} needs a text or number value, got {value!r}"
            )
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def coerce_partition(
    partition: Iterable[PartitionClause | tuple[Any, ...]] | None,
) -> tuple[PartitionClause, ...]:
    """Partition clauses from clauses or ``(column, value[, is_property])`` tuples. :raises InvalidArgumentError:"""
    if partition is None:
        return ()
    clauses: list[PartitionClause] = []
    for item in partition:
        if isinstance(item, PartitionClause):
            clause = item
        elif isinstance(item, tuple | list) and len(item) in (2, 3):
            clause = PartitionClause(item[0], item[1], bool(item[2]) if len(item) == 3 else False)
        else:
            raise InvalidArgumentError(
                f"partition clause {item!r} must be PartitionClause(column, value, is_property) "
                "or a (column, value) tuple"
            )
        if not isinstance(clause.column, str) or not clause.column:
            raise InvalidArgumentError(f"partition clause {item!r} needs a column name")
        if clause.is_property:
            if not isinstance(clause.value, str) or not clause.value:
                raise InvalidArgumentError(
                    f"partition clause on {clause.column!r} needs a recipient property name for CURRENT_RECIPIENT()"
                )
        elif clause.value is not None and not isinstance(clause.value, str | int | float | bool):
            raise InvalidArgumentError(
                f"partition value for {clause.column!r} must be text, a number or a boolean, got {clause.value!r}"
            )
        if any(c.column.lower() == clause.column.lower() for c in clauses):
            raise InvalidArgumentError(
                f"partition column {clause.column!r} appears twice in the filter"
            )
        clauses.append(clause)
    return tuple(clauses)


def validate_partition(
    clauses: tuple[PartitionClause, ...], columns: list[str], source: str
) -> None:
    """Every clause filters on one of ``columns``. :raises InvalidArgumentError:"""
    lowered = {c.lower() for c in columns}
    for clause in clauses:
        if clause.column.lower() not in lowered:
            have = ", ".join(columns) if columns else "no partition columns"
            raise InvalidArgumentError(
                f"{clause.column!r} is not a partition column of {source} (it has {have}); "
                "PARTITION (...) may only filter on partition columns"
            )


def validate_start_version(start_version: int, location: str, source: str) -> None:
    """``start_version`` is not after the table's latest version. :raises InvalidArgumentError:"""
    from deltalake import DeltaTable

    try:
        latest = DeltaTable(location).version()
    except Exception as exc:
        raise NotADeltaTableError(f"cannot read the Delta table at {location}: {exc}") from exc
    if start_version > latest:
        raise InvalidArgumentError(
            f"start version {start_version} is after the latest version {latest} of {source}; "
            f"use a version between 0 and {latest}"
        )
