"""The provider's data writes: ``INSERT``, ``UPDATE``, ``DELETE`` and ``MERGE`` as deltalake commits.

Every write is one Delta commit, so a table with ``delta.enableChangeDataFeed = true`` gets real
``_change_data`` files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from helpers.exceptions import InvalidArgumentError, SharelabError
from helpers.idents import quote_ident
from helpers.provider.engine import DataEngine
from helpers.provider.frames import cast_column, cast_like, clean_error
from helpers.sql import DataStatement, parse_one, sqlglot_dialect

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.table import TableMerger
    from sqlglot import exp


@dataclass(frozen=True)
class MergeClause:
    """One ``WHEN`` clause of a MERGE.

    :param kind: ``matched_update``, ``matched_delete``, ``not_matched_insert``,
        ``not_matched_by_source_update`` or ``not_matched_by_source_delete``.
    :param condition: the ``AND ...`` condition (Databricks SQL text, or a parsed sqlglot expression), or None.
    :param assignments: ``{target column: SQL expression}``; None means ``*`` (all columns by name).
    """

    kind: str
    condition: Any = None
    assignments: Mapping[str, Any] | None = None


_MERGE_KINDS = (
    "matched_update",
    "matched_delete",
    "not_matched_insert",
    "not_matched_by_source_update",
    "not_matched_by_source_delete",
)


class DataWrites(DataEngine):
    """Row writes on provider tables (the Python methods and the SQL statements)."""

    def insert(
        self,
        table: str,
        data: pd.DataFrame | pa.Table | Sequence[Mapping[str, Any]] | str,
        *,
        columns: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> pd.DataFrame:
        """Append rows (``INSERT INTO t ...``) as one Delta commit.

        :param data: a DataFrame, an Arrow table, a list of row dicts (columns by name), or a query text
            (``"SELECT ..."``/``"VALUES (...)"``, columns by position unless ``columns`` is given).
        :param overwrite: replace the table's rows (``INSERT OVERWRITE``).
        """
        import pyarrow as pa

        location, label = self._locate(table)
        if isinstance(data, str):
            statement = parse_one(data)
            if not isinstance(statement, DataStatement) or statement.kind != "query":
                raise InvalidArgumentError("insert() takes rows or a SELECT / VALUES query")
            arrow, _ = self._run_query_arrow(statement.expression)
            return self._append(location, label, arrow, columns, by_name=False, overwrite=overwrite)
        if isinstance(data, pd.DataFrame):
            arrow = pa.Table.from_pandas(data, preserve_index=False)
        elif isinstance(data, pa.Table):
            arrow = data
        else:
            arrow = pa.Table.from_pylist([dict(r) for r in data])
        return self._append(location, label, arrow, columns, by_name=True, overwrite=overwrite)

    def update(self, table: str, set: Mapping[str, str], where: str | None = None) -> pd.DataFrame:
        """``UPDATE t SET col = expr, ... [WHERE cond]`` (expressions in Databricks SQL) as one Delta commit."""
        import sqlglot

        location, label = self._locate(table)
        dt = self._delta(location, label)
        columns = self._columns(dt)
        dialect = sqlglot_dialect()
        updates = {}
        for col, expr_text in set.items():
            target = self._column(columns, str(col), label)
            tree = sqlglot.parse_one(str(expr_text), read=dialect)
            updates[quote_ident(target)] = self._to_datafusion(tree, {None: columns}, label)
        predicate = None
        if where:
            predicate = self._to_datafusion(
                sqlglot.parse_one(where, read=dialect), {None: columns}, label
            )
        return self._do_update(dt, label, updates, predicate)

    def delete(self, table: str, where: str | None = None) -> pd.DataFrame:
        """``DELETE FROM t [WHERE cond]`` as one Delta commit."""
        import sqlglot

        location, label = self._locate(table)
        dt = self._delta(location, label)
        predicate = None
        if where:
            tree = sqlglot.parse_one(where, read=sqlglot_dialect())
            predicate = self._to_datafusion(tree, {None: self._columns(dt)}, label)
        return self._do_delete(dt, label, predicate)

    def merge(
        self,
        table: str,
        source: str | pd.DataFrame | pa.Table,
        on: str,
        clauses: Sequence[MergeClause] = (),
        *,
        target_alias: str = "t",
        source_alias: str = "s",
        update: Mapping[str, str] | str | None = None,
        insert: Mapping[str, str] | str | None = None,
        delete_when: str | None = None,
    ) -> pd.DataFrame:
        """``MERGE INTO t USING source ON cond WHEN ...`` as one Delta commit.

        :param source: a table name, a query text, a DataFrame or an Arrow table.
        :param on: the match condition, naming columns as ``<target_alias>.col`` / ``<source_alias>.col``.
        :param clauses: :class:`MergeClause` objects, applied in order.
        :param update: shortcut for ``WHEN MATCHED THEN UPDATE SET ...`` (``"*"`` = all columns).
        :param insert: shortcut for ``WHEN NOT MATCHED THEN INSERT ...`` (``"*"`` = all columns).
        :param delete_when: shortcut for ``WHEN MATCHED AND <cond> THEN DELETE`` (placed first).
        """
        import pyarrow as pa
        import sqlglot
        from sqlglot import exp

        all_clauses: list[MergeClause] = []
        if delete_when:
            all_clauses.append(MergeClause("matched_delete", delete_when))
        all_clauses += list(clauses)
        if update is not None:
            all_clauses.append(MergeClause("matched_update", None, _assignments(update)))
        if insert is not None:
            all_clauses.append(MergeClause("not_matched_insert", None, _assignments(insert)))
        location, label = self._locate(table)
        if isinstance(source, pd.DataFrame):
            src = pa.Table.from_pandas(source, preserve_index=False)
        elif isinstance(source, pa.Table):
            src = source
        else:
            text = str(source).strip()
            dialect = sqlglot_dialect()
            if re.match(r"(?is)^(select|with|values|\()", text):
                tree = sqlglot.parse_one(text, read=dialect)
            else:
                tree = exp.select("*").from_(sqlglot.parse_one(text, read=dialect, into=exp.Table))
            src, _ = self._run_query_arrow(tree)
        return self._do_merge(location, label, src, on, all_clauses, target_alias, source_alias)

    def _sql_insert(self, tree: exp.Insert) -> pd.DataFrame:
        from sqlglot import exp

        target = tree.this
        columns = None
        if isinstance(target, exp.Schema):
            columns = [c.name for c in target.expressions]
            target = target.this
        location, label, _ = self._target(target)
        source = tree.expression
        if source is None:
            raise InvalidArgumentError("INSERT needs VALUES (...) or a SELECT")
        arrow, _ = self._run_query_arrow(source)
        return self._append(
            location,
            label,
            arrow,
            columns,
            by_name=False,
            overwrite=bool(tree.args.get("overwrite")),
        )

    def _append(
        self,
        location: str,
        label: str,
        data: pa.Table,
        columns: Sequence[str] | None,
        *,
        by_name: bool,
        overwrite: bool = False,
    ) -> pd.DataFrame:
        import pyarrow as pa
        from deltalake import write_deltalake

        dt = self._delta(location, label)
        schema = dt.to_pyarrow_dataset().schema
        lookup = {f.name.lower(): f.name for f in schema}
        if columns is not None:
            targets = [self._column(lookup, c, label) for c in columns]
            if len({t.lower() for t in targets}) != len(targets):
                raise InvalidArgumentError("a column is named twice in the INSERT column list")
        elif by_name:
            targets = [self._column(lookup, c, label) for c in data.column_names]
        else:
            targets = [f.name for f in schema]
        if data.num_columns != len(targets):
            raise InvalidArgumentError(
                f"INSERT into {label} gives {data.num_columns} value{'s' * (data.num_columns != 1)} per row "
                f"but {len(targets)} column{'s' * (len(targets) != 1)} "
                f"({', '.join(targets)}) are expected"
            )
        given = dict(zip([t.lower() for t in targets], data.columns, strict=True))
        arrays = []
        for f in schema:
            col = given.get(f.name.lower())
            if col is None:
                if not f.nullable:
                    raise InvalidArgumentError(
                        f"column {f.name} of {label} is NOT NULL and needs a value"
                    )
                arrays.append(pa.nulls(data.num_rows, type=f.type))
                continue
            arrays.append(cast_column(col, f, label))
        table = pa.Table.from_arrays(arrays, schema=schema)
        try:
            write_deltalake(location, table, mode="overwrite" if overwrite else "append")
        except Exception as exc:
            raise InvalidArgumentError(f"cannot write to {label}: {clean_error(exc)}") from exc
        n = table.num_rows
        return pd.DataFrame({"num_affected_rows": [n], "num_inserted_rows": [n]})

    def _sql_update(self, tree: exp.Update) -> pd.DataFrame:
        from sqlglot import exp

        if tree.args.get("from") or tree.args.get("from_") or tree.args.get("joins"):
            raise InvalidArgumentError("UPDATE ... FROM is not supported; use MERGE INTO ... USING")
        location, label, alias = self._target(tree.this)
        dt = self._delta(location, label)
        columns = self._columns(dt)
        if not tree.expressions:
            raise InvalidArgumentError("UPDATE needs SET column = value")
        updates: dict[str, str] = {}
        for assignment in tree.expressions:
            if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                raise InvalidArgumentError(
                    f"expected column = value in SET, found {assignment.sql()}"
                )
            target = self._column(columns, assignment.this.name, label)
            updates[quote_ident(target)] = self._to_datafusion(
                assignment.expression, {None: columns}, label
            )
        where = tree.args.get("where")
        predicate = self._to_datafusion(where.this, {None: columns}, label) if where else None
        return self._do_update(dt, label, updates, predicate)

    def _do_update(
        self, dt: DeltaTable, label: str, updates: Mapping[str, str], predicate: str | None
    ) -> pd.DataFrame:
        if not updates:
            raise InvalidArgumentError("UPDATE needs at least one SET column = value")
        try:
            metrics = dt.update(updates=dict(updates), predicate=predicate)
        except Exception as exc:
            raise InvalidArgumentError(f"UPDATE of {label} failed: {clean_error(exc)}") from exc
        n = int(metrics.get("num_updated_rows", 0))
        return pd.DataFrame({"num_affected_rows": [n]})

    def _sql_delete(self, tree: exp.Delete) -> pd.DataFrame:
        location, label, _ = self._target(tree.this)
        dt = self._delta(location, label)
        where = tree.args.get("where")
        predicate = (
            self._to_datafusion(where.this, {None: self._columns(dt)}, label) if where else None
        )
        return self._do_delete(dt, label, predicate)

    def _do_delete(self, dt: DeltaTable, label: str, predicate: str | None) -> pd.DataFrame:
        try:
            metrics = dt.delete(predicate)
        except Exception as exc:
            raise InvalidArgumentError(f"DELETE from {label} failed: {clean_error(exc)}") from exc
        n = int(metrics.get("num_deleted_rows", 0))
        return pd.DataFrame({"num_affected_rows": [n]})

    # -- MERGE ---------------------------------------------------------------------------------

    def _sql_merge(self, tree: exp.Merge) -> pd.DataFrame:
        from sqlglot import exp

        location, label, target_alias = self._target(tree.this)
        using = tree.args.get("using")
        if using is None:
            raise InvalidArgumentError("MERGE needs USING source")
        source_alias = using.alias
        inner = using.copy()
        inner.set("alias", None)
        if isinstance(inner, exp.Subquery):
            query = inner.this
        else:
            if not source_alias:
                source_alias = inner.name if isinstance(inner.this, exp.Identifier) else "source"
            query = exp.select("*").from_(inner)
        src, _ = self._run_query_arrow(query)
        on = tree.args.get("on")
        if on is None:
            raise InvalidArgumentError("MERGE needs ON condition")
        clauses: list[MergeClause] = []
        whens = tree.args.get("whens")
        for when in whens.expressions if whens is not None else []:
            clauses.append(_merge_clause(when))
        return self._do_merge(location, label, src, on, clauses, target_alias, source_alias)

    def _do_merge(
        self,
        location: str,
        label: str,
        source: pa.Table,
        on: str | exp.Expr,
        clauses: Sequence[MergeClause],
        target_alias: str,
        source_alias: str,
    ) -> pd.DataFrame:
        import sqlglot

        if not clauses:
            raise InvalidArgumentError("MERGE needs at least one WHEN clause")
        if target_alias.lower() == source_alias.lower():
            raise InvalidArgumentError("MERGE target and source need different aliases")
        dt = self._delta(location, label)
        target_schema = dt.to_pyarrow_dataset().schema
        target_cols = {f.name.lower(): f.name for f in target_schema}
        source = cast_like(source, target_schema)
        source_cols = {n.lower(): n for n in source.column_names}
        ta, sa = target_alias.lower(), source_alias.lower()
        scopes: dict[str | None, Mapping[str, str]] = {ta: target_cols, sa: source_cols}
        dialect = sqlglot_dialect()

        def render(value: str | exp.Expr) -> str:
            tree = sqlglot.parse_one(value, read=dialect) if isinstance(value, str) else value
            return self._to_datafusion(tree, scopes, label)

        def assignments(values: Mapping[str, Any] | None, kind: str) -> dict[str, str] | None:
            if values is None:
                missing = [c for c in target_cols if c not in source_cols]
                if missing and kind != "not_matched_insert":
                    raise InvalidArgumentError(
                        f"UPDATE SET * needs every column of {label} in the source; missing: "
                        + ", ".join(target_cols[m] for m in missing)
                    )
                if missing:
                    raise InvalidArgumentError(
                        f"INSERT * needs every column of {label} in the source; missing: "
                        + ", ".join(target_cols[m] for m in missing)
                    )
                return None
            out = {}
            for col, value in values.items():
                name = str(col).split(".")[-1]
                out[quote_ident(self._column(target_cols, name, label))] = render(value)
            return out

        try:
            builder = dt.merge(
                source=source,
                predicate=render(on),
                source_alias=sa,
                target_alias=ta,
            )
        except SharelabError:
            raise
        except Exception as exc:
            raise InvalidArgumentError(f"MERGE into {label} failed: {clean_error(exc)}") from exc
        for clause in clauses:
            if clause.kind not in _MERGE_KINDS:
                raise InvalidArgumentError(f"unknown MERGE clause kind {clause.kind!r}")
            predicate = render(clause.condition) if clause.condition is not None else None
            updates = (
                assignments(clause.assignments, clause.kind)
                if not clause.kind.endswith("delete")
                else None
            )
            builder = _add_merge_clause(builder, clause.kind, predicate, updates)
        try:
            metrics = builder.execute()
        except Exception as exc:
            raise InvalidArgumentError(f"MERGE into {label} failed: {clean_error(exc)}") from exc
        return _merge_result(metrics)


def _assignments(value: Mapping[str, str] | str) -> Mapping[str, Any] | None:
    """A ``merge(update=..., insert=...)`` shortcut: ``"*"`` (all columns by name) is None."""
    return None if value == "*" else cast("Mapping[str, Any]", value)


def _merge_clause(when: exp.When) -> MergeClause:
    """One parsed ``WHEN [NOT] MATCHED [BY SOURCE] [AND cond] THEN ...`` as a :class:`MergeClause`."""
    from sqlglot import exp

    assignments: dict[str, Any] | None
    matched = bool(when.args.get("matched"))
    by_source = bool(when.args.get("source"))
    condition = when.args.get("condition")
    then = when.args.get("then")
    if isinstance(then, exp.Update):
        kind = "not_matched_by_source_update" if by_source else "matched_update"
        if len(then.expressions) == 1 and isinstance(then.expressions[0], exp.Star):
            assignments = None
        else:
            assignments = {}
            for a in then.expressions:
                if not isinstance(a, exp.EQ) or not isinstance(a.this, exp.Column):
                    raise InvalidArgumentError(f"expected column = value, found {a.sql()}")
                assignments[a.this.name] = a.expression
    elif isinstance(then, exp.Insert):
        kind = "not_matched_insert"
        if isinstance(then.this, exp.Star) or then.this is None:
            assignments = None
        else:
            cols = [c.name for c in then.this.expressions]
            values = list(then.expression.expressions) if then.expression is not None else []
            if len(cols) != len(values):
                raise InvalidArgumentError(
                    f"INSERT names {len(cols)} columns but gives {len(values)} values"
                )
            assignments = dict(zip(cols, values, strict=True))
    elif (isinstance(then, exp.Var) and then.name.upper() == "DELETE") or (
        isinstance(then, exp.Delete)
    ):
        kind = "not_matched_by_source_delete" if by_source else "matched_delete"
        assignments = None
    else:
        raise InvalidArgumentError(f"unsupported MERGE action {then.sql() if then else None}")
    if not matched and not by_source and kind != "not_matched_insert":
        raise InvalidArgumentError("WHEN NOT MATCHED can only INSERT")
    if matched and kind == "not_matched_insert":
        raise InvalidArgumentError("WHEN MATCHED can UPDATE or DELETE, not INSERT")
    return MergeClause(kind, condition, assignments)


def _add_merge_clause(
    builder: TableMerger, kind: str, predicate: str | None, updates: dict[str, str] | None
) -> TableMerger:
    """``builder`` with one ``WHEN`` clause of ``kind`` added (``updates`` None means ``*``)."""
    if kind == "matched_update":
        return (
            builder.when_matched_update_all(predicate=predicate)
            if updates is None
            else builder.when_matched_update(updates=updates, predicate=predicate)
        )
    if kind == "matched_delete":
        return builder.when_matched_delete(predicate=predicate)
    if kind == "not_matched_insert":
        return (
            builder.when_not_matched_insert_all(predicate=predicate)
            if updates is None
            else builder.when_not_matched_insert(updates=updates, predicate=predicate)
        )
    if kind == "not_matched_by_source_update":
        if updates is None:
            raise InvalidArgumentError("WHEN NOT MATCHED BY SOURCE needs UPDATE SET col = value")
        return builder.when_not_matched_by_source_update(updates=updates, predicate=predicate)
    return builder.when_not_matched_by_source_delete(predicate=predicate)


def _merge_result(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """A MERGE's ``num_*_rows`` counts, like Databricks."""
    updated = int(metrics.get("num_target_rows_updated", 0))
    deleted = int(metrics.get("num_target_rows_deleted", 0))
    inserted = int(metrics.get("num_target_rows_inserted", 0))
    return pd.DataFrame(
        {
            "num_affected_rows": [updated + deleted + inserted],
            "num_updated_rows": [updated],
            "num_deleted_rows": [deleted],
            "num_inserted_rows": [inserted],
        }
    )
