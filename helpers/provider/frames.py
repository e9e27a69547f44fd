"""Result helpers of the provider: DataFrames shaped like Databricks' results, timestamps, Arrow casts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    import pyarrow as pa


def status_frame(message: str) -> pd.DataFrame:
    """The result of a statement that returns no rows: one ``status`` line (shown by notebooks and the CLI)."""
    return pd.DataFrame({"status": [message]})


def rows_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """A result with exactly ``columns``, in that order (also when there are no rows)."""
    return pd.DataFrame([dict(r) for r in rows], columns=list(columns))


def to_utc(value: datetime | None) -> pd.Timestamp | None:
    """A catalog datetime as a UTC pandas Timestamp (None stays None)."""
    return None if value is None else pd.Timestamp(value).tz_convert("UTC")


def iso_z(value: datetime | None) -> str | None:
    """``2024-01-31T12:00:00Z`` (None stays None), as DESCRIBE RECIPIENT shows times."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_timestamp(value: str | datetime) -> datetime:
    """A timestamp given as text or datetime, as an aware UTC datetime (naive values are UTC)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(
            f"{value!r} is not a timestamp; write it like '2024-01-31 12:00:00' (UTC) or with an offset"
        ) from exc
    if pd.isna(stamp):
        raise InvalidArgumentError(f"{value!r} is not a timestamp")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def clean_error(exc: BaseException) -> str:
    """A one-line message from a library exception."""
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__


_TYPE_NAMES = {
    "integer": "int",
    "long": "bigint",
    "short": "smallint",
    "byte": "tinyint",
    "timestamp_ntz": "timestamp_ntz",
}


def type_name(delta_type: object) -> str:
    """A Delta column type as Databricks names it (``int``, ``bigint``, ...)."""
    raw = getattr(delta_type, "type", None)
    if raw == "array":
        return f"array<{type_name(getattr(delta_type, 'element_type', None))}>"
    if raw == "map":
        key, value = getattr(delta_type, "key_type", None), getattr(delta_type, "value_type", None)
        return f"map<{type_name(key)},{type_name(value)}>"
    if raw == "struct":
        fields = getattr(delta_type, "fields", [])
        return "struct<" + ",".join(f"{f.name}:{type_name(f.type)}" for f in fields) + ">"
    if isinstance(raw, str):
        return _TYPE_NAMES.get(raw, raw)
    return str(delta_type)


def normalize_arrow(table: pa.Table) -> pa.Table:
    """View types → plain types (pandas and old readers), ``_commit_timestamp`` → UTC tz-aware."""
    import pyarrow as pa

    fields = []
    changed = False
    for f in table.schema:
        t = f.type
        if t == pa.string_view():
            t = pa.string()
        elif t == pa.binary_view():
            t = pa.binary()
        elif f.name == "_commit_timestamp" and pa.types.is_timestamp(t) and t.tz is None:
            t = pa.timestamp(t.unit, tz="UTC")
        changed |= t != f.type
        fields.append(pa.field(f.name, t, f.nullable))
    if not changed:
        return table
    arrays = []
    for col, f in zip(table.columns, fields, strict=True):
        if pa.types.is_timestamp(f.type) and f.type.tz == "UTC" and col.type.tz is None:
            arrays.append(col.cast(pa.timestamp(col.type.unit)).cast(f.type))
        else:
            arrays.append(col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Query results as pandas; DuckDB's HUGEINT (``sum`` of integers) becomes int64 like Databricks' bigint."""
    import pyarrow as pa

    arrays = []
    for col in table.columns:
        t = col.type
        if pa.types.is_decimal(t) and t.scale == 0 and t.precision == 38:
            try:
                col = col.cast(pa.int64(), safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # too large for int64: keep the exact decimal
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=table.column_names).to_pandas()


def cast_column(column: pa.ChunkedArray, field: pa.Field, label: str) -> pa.ChunkedArray:
    """Cast an inserted column to the table's Arrow type, with a message naming the column."""
    import pyarrow as pa

    target = field.type
    col = column
    try:
        if pa.types.is_timestamp(target):
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                col = col.cast(pa.timestamp(target.unit))  # text timestamps are read as UTC
            if pa.types.is_timestamp(col.type) and col.type.tz is None and target.tz is not None:
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))  # naive values are UTC
        return col.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidArgumentError(
            f"cannot store the given {col.type} values in column {field.name} ({target}) of {label}: "
            f"{clean_error(exc)}"
        ) from exc


def cast_like(source: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast source columns named like target columns to the target's types where that is lossless."""
    import pyarrow as pa

    by_name = {f.name.lower(): f for f in schema}
    arrays, fields = [], []
    for name, col in zip(source.column_names, source.columns, strict=True):
        f = by_name.get(name.lower())
        if f is not None and col.type != f.type:
            try:
                col = cast_column(col, f, "the MERGE target")
            except InvalidArgumentError:
                pass
        arrays.append(col)
        fields.append(pa.field(name, col.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
