"""The provider's data engine: table names → Delta tables, and reads through DuckDB.

Reads (``SELECT``, ``table_changes``, ``DESCRIBE HISTORY``) use DuckDB over
``DeltaTable(location).to_pyarrow_dataset()`` (no DuckDB extensions, so no network). Table names in SQL are
resolved against the catalog: ``catalog.schema.table`` (a shorter name works when it matches exactly one
registered table), ``delta.`/path``` and ``system.access.audit`` (the sharing server's audit log). Write
conditions are rendered as DataFusion SQL for deltalake (:meth:`DataEngine._to_datafusion`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers.catalog import TableInfo, parse_delta_path
from helpers.exceptions import InvalidArgumentError, NotADeltaTableError, NotFoundError
from helpers.provider.audit_view import audit_arrow, audit_pandas, source_lookup
from helpers.provider.base import ProviderBase
from helpers.provider.frames import (
    arrow_to_pandas,
    clean_error,
    normalize_arrow,
    rows_frame,
    status_frame,
    type_name,
    utc_timestamp,
)
from helpers.sql import DataStatement, parse_one

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from deltalake import DeltaTable
    from sqlglot import exp


#: A ``table_changes`` start or end: a version, a timestamp text or a datetime.
ChangeBound = int | str | datetime

_AUDIT_NAME = ("system", "access", "audit")
# Display order of change types within one commit (a pre-image before its post-image).
_CHANGE_ORDER = {"delete": 0, "update_preimage": 1, "update_postimage": 2, "insert": 3}


class DataEngine(ProviderBase):
    """Name resolution, Delta reads, table metadata and DuckDB queries."""

    # ------------------------------------------------------------------------------------------
    # Table metadata
    # ------------------------------------------------------------------------------------------

    def describe_table(self, table: str) -> pd.DataFrame:
        """``DESCRIBE TABLE t``: col_name, data_type, nullable, partition."""
        location, label = self._locate(table)
        dt = self._delta(location, label)
        partitions = {c.lower() for c in dt.metadata().partition_columns}
        rows = [
            {
                "col_name": f.name,
                "data_type": type_name(f.type),
                "nullable": bool(f.nullable),
                "partition": f.name.lower() in partitions,
                "comment": dict(f.metadata or {}).get("comment"),
            }
            for f in dt.schema().fields
        ]
        return rows_frame(rows, ["col_name", "data_type", "nullable", "partition", "comment"])

    def history(self, table: str, limit: int | None = None) -> pd.DataFrame:
        """``DESCRIBE HISTORY t [LIMIT n]``: newest version first, Databricks' columns."""
        location, label = self._locate(table)
        dt = self._delta(location, label)
        rows = []
        for h in dt.history(limit):
            rows.append(
                {
                    "version": h.get("version"),
                    "timestamp": pd.Timestamp(h.get("timestamp", 0), unit="ms", tz="UTC"),
                    "operation": h.get("operation"),
                    "operationParameters": dict(h.get("operationParameters") or {}),
                    "readVersion": h.get("readVersion"),
                    "isolationLevel": h.get("isolationLevel"),
                    "isBlindAppend": h.get("isBlindAppend"),
                    "operationMetrics": dict(h.get("operationMetrics") or {}),
                    "userMetadata": h.get("userMetadata"),
                    "engineInfo": h.get("engineInfo"),
                }
            )
        columns = [
            "version",
            "timestamp",
            "operation",
            "operationParameters",
            "readVersion",
            "isolationLevel",
            "isBlindAppend",
            "operationMetrics",
            "userMetadata",
            "engineInfo",
        ]
        frame = rows_frame(rows, columns).sort_values("version", ascending=False, ignore_index=True)
        frame["version"] = frame["version"].astype("Int64")
        frame["readVersion"] = frame["readVersion"].astype("Int64")
        return frame

    def set_tblproperties(self, table: str, properties: Mapping[str, Any]) -> pd.DataFrame:
        """``ALTER TABLE t SET TBLPROPERTIES (key = value, ...)`` as one Delta commit.

        ``delta.*`` keys are checked by deltalake (a misspelt ``delta.`` key is an error); other keys are free.
        """
        if not properties:
            raise InvalidArgumentError("SET TBLPROPERTIES needs at least one key = value")
        location, label = self._locate(table)
        dt = self._delta(location, label)
        props = {
            str(k): (str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in properties.items()
        }
        strict = all(k.lower().startswith("delta.") for k in props)
        try:
            dt.alter.set_table_properties(props, raise_if_not_exists=strict)
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot set properties {props} on {label}: {clean_error(exc)}; property values are "
                "strings, numbers or true/false (delta.enableChangeDataFeed = true)"
            ) from exc
        version = self._delta(location, label).version()
        shown = ", ".join(f"{k} = {v}" for k, v in props.items())
        return status_frame(f"table {label} version {version}: set {shown}")

    def show_tblproperties(self, table: str) -> pd.DataFrame:
        """``SHOW TBLPROPERTIES t``: key, value (protocol versions included)."""
        location, label = self._locate(table)
        dt = self._delta(location, label)
        protocol = dt.protocol()
        rows = [
            {"key": "delta.minReaderVersion", "value": str(protocol.min_reader_version)},
            {"key": "delta.minWriterVersion", "value": str(protocol.min_writer_version)},
        ]
        rows += [{"key": k, "value": v} for k, v in sorted(dt.metadata().configuration.items())]
        return rows_frame(rows, ["key", "value"])

    # ------------------------------------------------------------------------------------------
    # Data: reads
    # ------------------------------------------------------------------------------------------

    def select(self, query: str) -> pd.DataFrame:
        """Run a ``SELECT`` (Databricks SQL) over provider tables, ``table_changes(...)`` and the audit log."""
        statement = parse_one(query)
        if not isinstance(statement, DataStatement) or statement.kind != "query":
            raise InvalidArgumentError("select() runs queries only (SELECT / WITH / VALUES)")
        return self._query_frame(statement.expression)

    query = select

    def table_changes(
        self, table: str, start: int | str, end: int | str | None = None
    ) -> pd.DataFrame:
        """``SELECT * FROM table_changes('t', start[, end])``: the change data feed, oldest commit first.

        :param start: first version (int) or timestamp (``'2024-01-01 00:00:00'``, UTC).
        :param end: last version or timestamp (inclusive); default: the latest.
        """
        location, label = self._locate(table)
        data = self._changes_arrow(location, label, start, end)
        frame = data.to_pandas()
        order = frame["_change_type"].map(_CHANGE_ORDER).fillna(len(_CHANGE_ORDER))
        frame = frame.assign(__order=order).sort_values(
            ["_commit_version", "__order"], kind="stable", ignore_index=True
        )
        return frame.drop(columns="__order")

    def audit(self) -> pd.DataFrame:
        """``SELECT * FROM system.access.audit``: the sharing server's requests."""
        return audit_pandas(self.catalog.audit_frame(), source_lookup(self.catalog))

    # ------------------------------------------------------------------------------------------
    # Engine
    # ------------------------------------------------------------------------------------------

    def _locate(self, name: str) -> tuple[str, str]:
        """``(location, label)`` of a table given as ``c.s.t`` (or a unique shorter name) or ``delta.`/p```."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("give a table name such as catalog.schema.table")
        path = parse_delta_path(name)
        if path is not None:
            return path, name
        parts = [p.strip("`") for p in name.strip().split(".")]
        info = self._resolve_name(parts)
        return info.location, info.name

    def _resolve_name(self, parts: Sequence[str]) -> TableInfo:
        if len(parts) == 3:
            return self.catalog.get_table(".".join(parts))
        if not 1 <= len(parts) <= 3:
            raise InvalidArgumentError(
                f"table name {'.'.join(parts)!r} has {len(parts)} parts; use catalog.schema.table"
            )
        # USE defaults first: USE CATALOG c + USE SCHEMA s make "t" mean c.s.t and "x.t" mean c.x.t
        full = list(parts)
        if len(full) == 1 and self.current_schema is not None:
            full = [self.current_schema, *full]
        if len(full) == 2 and self.current_catalog is not None:
            full = [self.current_catalog, *full]
        if len(full) == 3:
            try:
                return self.catalog.get_table(".".join(full))
            except NotFoundError:
                pass
        wanted = [p.lower() for p in parts]
        matches = [
            t
            for t in self.catalog.list_tables()
            if [t.catalog.lower(), t.schema.lower(), t.table.lower()][-len(parts) :] == wanted
        ]
        if len(matches) == 1:
            return matches[0]
        name = ".".join(parts)
        if not matches:
            raise NotFoundError(
                f"table {name!r} is not registered; use a three-part name catalog.schema.table "
                "(SHOW TABLES lists them) or CREATE TABLE c.s.t LOCATION '/path' first"
            )
        options = ", ".join(m.name for m in matches)
        raise InvalidArgumentError(
            f"table name {name!r} is ambiguous ({options}); use the three-part name"
        )

    @staticmethod
    def _delta(location: str, label: str, version: int | str | None = None) -> DeltaTable:
        from deltalake import DeltaTable

        try:
            dt = DeltaTable(location)
            if isinstance(version, str):
                dt.load_as_version(utc_timestamp(version))
            elif version is not None:
                dt.load_as_version(version)
            return dt
        except Exception as exc:
            if version is not None:
                raise InvalidArgumentError(
                    f"cannot read {label} as of {version!r}: {clean_error(exc)} (DESCRIBE HISTORY lists "
                    "its versions)"
                ) from exc
            raise NotADeltaTableError(
                f"cannot read the Delta table {label} at {location}: {clean_error(exc)}"
            ) from exc

    @staticmethod
    def _columns(dt: DeltaTable) -> dict[str, str]:
        """Lower-cased column name → actual name."""
        return {f.name.lower(): f.name for f in dt.schema().fields}

    @staticmethod
    def _column(columns: Mapping[str, str], name: str, label: str) -> str:
        actual = columns.get(name.lower())
        if actual is None:
            raise InvalidArgumentError(
                f"column {name!r} does not exist in {label}; its columns are {', '.join(columns.values())}"
            )
        return actual

    def _changes_arrow(
        self, location: str, label: str, start: ChangeBound, end: ChangeBound | None = None
    ) -> pa.Table:
        import pyarrow as pa

        dt = self._delta(location, label)
        kwargs: dict[str, Any] = {}
        for key, value in (("starting", start), ("ending", end)):
            if value is None:
                continue
            if isinstance(value, bool):
                raise InvalidArgumentError(f"table_changes {key} must be a version or a timestamp")
            if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
                if int(value) < 0:
                    raise InvalidArgumentError(f"table_changes {key} version must be >= 0")
                kwargs[f"{key}_version"] = int(value)
            elif isinstance(value, (str, datetime)):
                kwargs[f"{key}_timestamp"] = utc_timestamp(value).isoformat()
            else:
                raise InvalidArgumentError(
                    f"table_changes {key} must be a version number or a timestamp string, got {value!r}"
                )
        latest = dt.version()
        if "starting_version" in kwargs and kwargs["starting_version"] > latest:
            raise InvalidArgumentError(
                f"table_changes start version {kwargs['starting_version']} is after the latest version "
                f"{latest} of {label}"
            )
        if (
            "ending_version" in kwargs
            and "starting_version" in kwargs
            and kwargs["ending_version"] < kwargs["starting_version"]
        ):
            raise InvalidArgumentError("table_changes end version is before its start version")
        if "ending_version" in kwargs and kwargs["ending_version"] > latest:
            kwargs["ending_version"] = latest
        try:
            reader = dt.load_cdf(**kwargs)
            table = pa.RecordBatchReader.from_stream(reader).read_all()
        except Exception as exc:
            text = clean_error(exc)
            hint = ""
            if "change data" in text.lower() or "cdf" in text.lower():
                hint = (
                    f"; enable it with ALTER TABLE {label} SET TBLPROPERTIES "
                    "(delta.enableChangeDataFeed = true) and read from the versions after that commit "
                    "(DESCRIBE HISTORY shows them)"
                )
            raise InvalidArgumentError(
                f"cannot read the change data feed of {label}: {text}{hint}"
            ) from exc
        return normalize_arrow(table)

    # -- SELECT --------------------------------------------------------------------------------

    def _bind(
        self,
        tree: exp.Expr,
        con: duckdb.DuckDBPyConnection,
        names: dict[str, str],
        bound: dict[str, Any] | None = None,
    ) -> exp.Expr:
        """Replace provider table references in ``tree`` by DuckDB-registered Arrow data."""
        from sqlglot import exp

        tree = tree.copy()
        # current_catalog() / current_schema() answer with the USE defaults, not DuckDB's own
        for node in list(tree.find_all(exp.CurrentCatalog, exp.CurrentSchema, exp.CurrentDatabase)):
            value = (
                self.current_catalog
                if isinstance(node, exp.CurrentCatalog)
                else self.current_schema
            )
            node.replace(exp.Literal.string(value) if value is not None else exp.null())
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        for table in list(tree.find_all(exp.Table)):
            data, label = self._table_data(table, ctes)
            if data is None:
                continue
            reg = f"__sharelab_{len(names)}"
            try:
                con.register(reg, data)
            except Exception as exc:
                raise InvalidArgumentError(f"cannot query {label}: {clean_error(exc)}") from exc
            names[reg] = label
            if bound is not None:
                bound[reg] = data
            alias = table.args.get("alias")
            if alias is None and isinstance(table.this, exp.Identifier):
                alias = exp.TableAlias(this=exp.to_identifier(table.name))
            table.replace(exp.Table(this=exp.to_identifier(reg, quoted=True), alias=alias))
        return tree

    def _table_data(self, table: exp.Table, ctes: set[str]) -> tuple[Any, str]:
        from sqlglot import exp

        if not isinstance(table.this, exp.Identifier):
            func = table.this
            fname = (func.name if isinstance(func, exp.Anonymous) else func.key) if func else ""
            if str(fname).lower() != "table_changes":
                return None, ""
            args = [_literal_value(a) for a in func.expressions]
            if not 2 <= len(args) <= 3 or not isinstance(args[0], str):
                raise InvalidArgumentError(
                    "table_changes takes ('catalog.schema.table', start[, end]) with versions or timestamps"
                )
            location, label = self._locate(args[0])
            end = args[2] if len(args) == 3 else None
            return self._changes_arrow(location, label, args[1], end), f"table_changes('{label}')"
        parts = [p.name for p in table.parts]
        if len(parts) == 1 and parts[0].lower() in ctes:
            return None, ""
        if [p.lower() for p in parts] == list(_AUDIT_NAME):
            audit = audit_arrow(self.catalog.audit_frame(), source_lookup(self.catalog))
            return audit, "system.access.audit"
        version = table.args.get("version")
        version_value: Any = None
        if version is not None:
            version_value = _literal_value(version.expression)
            if str(version.this).upper() == "TIMESTAMP":
                version_value = str(version_value)
            elif not isinstance(version_value, int):
                raise InvalidArgumentError("VERSION AS OF needs a whole version number")
        if len(parts) == 2 and parts[0].lower() == "delta":
            location, label = parts[1], f"delta.`{parts[1]}`"
        else:
            info = self._resolve_name(parts)
            location, label = info.location, info.name
        dt = self._delta(location, label, version_value)
        try:
            return dt.to_pyarrow_dataset(), label
        except Exception as exc:  # e.g. table features deltalake cannot read as a dataset
            raise InvalidArgumentError(f"cannot read {label}: {clean_error(exc)}") from exc

    def _query_frame(self, tree: exp.Expr) -> pd.DataFrame:
        """A query's result as pandas."""
        arrow, _ = self._run_query_arrow(tree)
        return arrow_to_pandas(arrow)

    def _run_query_arrow(self, tree: exp.Expr) -> tuple[pa.Table, dict[str, str]]:
        import duckdb

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            names: dict[str, str] = {}
            data: dict[str, Any] = {}
            text = self._bind(tree, con, names, data).sql(dialect="duckdb")
            try:
                try:
                    table = _fetch_arrow(con, text)
                except duckdb.Error as exc:
                    if "string_view" not in str(exc):
                        raise
                    # Files rewritten by UPDATE/DELETE/MERGE store strings as string_view, which
                    # pyarrow cannot compare: DuckDB's filter pushdown into the dataset fails. Read
                    # those tables whole (cast to the table's schema) and let DuckDB filter.
                    _materialize_datasets(con, data)
                    table = _fetch_arrow(con, text)
            except duckdb.Error as exc:
                message = str(exc).split("\n")[0]
                for reg, label in names.items():
                    message = message.replace(reg, label)
                raise InvalidArgumentError(f"query failed: {message}") from exc
            return normalize_arrow(table), names
        finally:
            con.close()

    # -- INSERT --------------------------------------------------------------------------------

    def _target(self, table: exp.Expression) -> tuple[str, str, str]:
        """``(location, label, alias)`` of a write target."""
        from sqlglot import exp

        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise InvalidArgumentError("the target of a write must be a table name")
        parts = [p.name for p in table.parts]
        if [p.lower() for p in parts] == list(_AUDIT_NAME):
            raise InvalidArgumentError("system.access.audit is read-only")
        if len(parts) == 2 and parts[0].lower() == "delta":
            location, label = parts[1], f"delta.`{parts[1]}`"
        else:
            info = self._resolve_name(parts)
            location, label = info.location, info.name
        alias = table.alias or parts[-1]
        return location, label, alias

    # -- UPDATE / DELETE -----------------------------------------------------------------------

    def _to_datafusion(
        self,
        tree: exp.Expr,
        scopes: Mapping[str | None, Mapping[str, str]],
        label: str,
    ) -> str:
        """Render a Databricks expression as DataFusion SQL with exact, quoted column names.

        ``scopes`` maps an alias (lower-cased; None for unqualified single-table statements) to that side's
        lower-cased → actual column names.
        """
        from sqlglot import exp

        tree = tree.copy()
        if tree.find(exp.Subquery, exp.Select):
            raise InvalidArgumentError(
                f"subqueries are not supported in this condition on {label}; use MERGE INTO ... USING "
                "(SELECT ...) instead"
            )
        for col in list(tree.find_all(exp.Column)):
            qualifier = col.table.lower() if col.table else None
            name = col.name
            if None in scopes:  # single table: drop qualifiers (the table name or its alias)
                actual = self._column(scopes[None], name, label)
                col.replace(exp.column(actual, quoted=True))
                continue
            if qualifier is None:
                sides = [a for a, cols in scopes.items() if name.lower() in cols]
                if len(sides) != 1:
                    where = "both tables" if sides else "neither table"
                    raise InvalidArgumentError(
                        f"column {name!r} is in {where} of the MERGE; qualify it as "
                        f"{' or '.join(f'{a}.{name}' for a in scopes)}"
                    )
                qualifier = sides[0]
            if qualifier not in scopes:
                raise InvalidArgumentError(
                    f"{col.sql()} refers to {col.table!r}, which is neither the target nor the source "
                    f"alias ({', '.join(str(a) for a in scopes)})"
                )
            actual = self._column(scopes[qualifier], name, f"{label} ({qualifier})")
            col.replace(exp.column(actual, table=qualifier, quoted=True))
        return tree.sql(dialect="postgres")


def _literal_value(node: exp.Expr | None) -> Any:
    """A literal argument (string, number, negated number, ``DATE 'text'``) as a Python value."""
    from sqlglot import exp

    if isinstance(node, exp.Neg):
        value = _literal_value(node.this)
        return -value if isinstance(value, int | float) else value
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text)
        except ValueError:
            return float(text)
    if isinstance(node, exp.Cast | exp.TsOrDsToDate | exp.TsOrDsToTimestamp) and isinstance(
        node.this, exp.Literal
    ):
        return node.this.this
    raise InvalidArgumentError(f"expected a literal value, found {node.sql() if node else None}")


def _fetch_arrow(con: duckdb.DuckDBPyConnection, text: str) -> pa.Table:
    result = con.sql(text)
    if result is None:
        raise InvalidArgumentError("the query returned no result set")
    return result.to_arrow_table()


def _materialize_datasets(con: duckdb.DuckDBPyConnection, data: dict[str, Any]) -> None:
    """Register each bound pyarrow dataset again as an in-memory table (no filter pushdown)."""
    import pyarrow.dataset as ds

    for reg, value in data.items():
        if isinstance(value, ds.Dataset):
            con.unregister(reg)
            con.register(reg, value.to_table())
