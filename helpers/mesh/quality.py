"""Quality measured on a Delta snapshot with DuckDB: row count, completeness per column and per table
(optional columns left out), key uniqueness, validity rule pass rates (SQL CHECK semantics) and freshness
from the Delta commit timestamps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from helpers.exceptions import InvalidArgumentError
from helpers.idents import quote_ident
from helpers.mesh.delta import last_commit, open_delta
from helpers.mesh.models import TableQuality

if TYPE_CHECKING:
    import duckdb


def validity(location: str, rules: Mapping[str, str]) -> dict[str, float | None]:
    """Pass rate (%) of each validity rule on the table at ``location`` (None for an empty table)."""
    if not rules:
        return {}
    import duckdb

    ds = open_delta(location).to_pyarrow_dataset()
    con = duckdb.connect()
    try:
        con.register("t", ds)
        out: dict[str, float | None] = {}
        for name, expr in rules.items():
            try:
                total, bad = _one_row(
                    con, f"SELECT count(*), count(*) FILTER (WHERE NOT ({expr})) FROM t"
                )
            except duckdb.Error as exc:
                raise InvalidArgumentError(
                    f"validity rule {name!r} ({expr}) fails on the table: "
                    f"{str(exc).splitlines()[0]}"
                ) from exc
            out[name] = None if total == 0 else 100.0 * (total - bad) / total
        return out
    finally:
        con.close()


def measure_table(
    alias: str,
    location: str,
    keys: Sequence[str],
    optional: Sequence[str],
    rules: Mapping[str, str],
    now: datetime,
) -> TableQuality:
    """Measure one output table (share alias ``alias``) on its current Delta snapshot."""
    import duckdb
    import pyarrow as pa

    dt = open_delta(location)
    ds = dt.to_pyarrow_dataset()
    con = duckdb.connect()
    try:
        con.register("t", ds)
        exprs = ["count(*)"]
        names = [f.name for f in ds.schema]
        for f in ds.schema:
            q = quote_ident(f.name)
            if pa.types.is_floating(f.type):  # NaN is missing too, as pandas counts it
                exprs.append(f"count(*) FILTER (WHERE {q} IS NOT NULL AND NOT isnan({q}))")
            else:
                exprs.append(f"count({q})")
        row = _one_row(con, "SELECT " + ", ".join(exprs) + " FROM t")
        total = int(row[0])
        completeness = {
            n: (None if total == 0 else 100.0 * int(c) / total)
            for n, c in zip(names, row[1:], strict=True)
        }
        key_cols = tuple(keys)
        uniqueness: float | None = None
        if key_cols:
            distinct = _one_row(
                con,
                "SELECT count(*) FROM (SELECT DISTINCT "
                + ", ".join(quote_ident(k) for k in key_cols)
                + " FROM t)",
            )[0]
            uniqueness = None if total == 0 else 100.0 * int(distinct) / total
    finally:
        con.close()
    optional_l = {c.lower() for c in optional}
    required = [v for n, v in completeness.items() if n.lower() not in optional_l and v is not None]
    table_pct = sum(required) / len(required) if required else None
    last = last_commit(dt)
    return TableQuality(
        table=alias,
        location=location,
        delta_version=int(dt.version()),
        row_count=total,
        column_completeness=completeness,
        completeness_pct=table_pct,
        key_columns=key_cols,
        uniqueness_pct=uniqueness,
        validity=validity(location, rules),
        last_commit=last,
        freshness_hours=max(0.0, (now - last).total_seconds() / 3600.0),
    )


def _one_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The one row of an aggregate query."""
    row = con.execute(sql).fetchone()
    if row is None:  # an aggregate without GROUP BY always has one row
        raise AssertionError(f"no row from {sql}")
    return row
