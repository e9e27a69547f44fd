"""The SQL of shared views: check a view's query, bind ``current_recipient('prop')``, run it with DuckDB.

A view's query may read registered provider tables only (``catalog.schema.table``, or a shorter name the
``USE`` defaults or a unique match complete); table functions (``table_changes``, ``read_parquet``...),
``delta.`/path``` sources, ``system.access.audit`` and other views are refused when the view is created.
The stored query has every table name fully qualified, so it means the same whoever runs it later.

``current_recipient('prop')`` (any case) becomes the reading recipient's property ``prop`` as a string
literal, or NULL when the recipient has no such property: a row filter ``region = current_recipient('region')``
then keeps no row, the safe default. DuckDB runs with external access disabled (no file or network reads
other than the registered tables), and the result is ordered (``ORDER BY ALL``) so that the same inputs
always give the same bytes (what lets the server tell whether a view's result changed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from helpers.catalog import Catalog, TableInfo
from helpers.exceptions import InvalidArgumentError, NotFoundError
from helpers.provider.frames import clean_error, normalize_arrow
from helpers.sql import sqlglot_dialect

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

__all__ = ["PreparedView", "RECIPIENT_FUNCTION", "prepare_view", "run_view_query"]

#: The function a view's query uses to read the reading recipient's properties.
RECIPIENT_FUNCTION = "current_recipient"


@dataclass(frozen=True)
class PreparedView:
    """A checked view query: the text with qualified names, the tables it reads and the properties it uses."""

    query: str
    sources: tuple[str, ...]
    properties: tuple[str, ...]


def _recipient_calls(tree: exp.Expr) -> list[tuple[exp.Expr, str]]:
    """Every ``current_recipient('prop')`` call in ``tree`` with its (lower-cased) property name."""
    from sqlglot import exp

    calls: list[tuple[exp.Expr, str]] = []
    for node in tree.find_all(exp.Anonymous):
        if str(node.name).lower() != RECIPIENT_FUNCTION:
            continue
        args = node.expressions
        if len(args) != 1 or not isinstance(args[0], exp.Literal) or not args[0].is_string:
            raise InvalidArgumentError(
                f"{node.sql()}: current_recipient takes one property name string, as in "
                "current_recipient('region')"
            )
        calls.append((node, str(args[0].this).lower()))
    return calls


def _resolve(
    catalog: Catalog, parts: Sequence[str], current_catalog: str | None, current_schema: str | None
) -> TableInfo:
    full = list(parts)
    if len(full) == 1 and current_schema is not None:
        full = [current_schema, *full]
    if len(full) == 2 and current_catalog is not None:
        full = [current_catalog, *full]
    if len(full) == 3:
        try:
            return catalog.get_table(".".join(full))
        except NotFoundError:
            if len(parts) == 3:
                raise
    wanted = [p.lower() for p in parts]
    matches = [
        t
        for t in catalog.list_tables()
        if [t.catalog.lower(), t.schema.lower(), t.table.lower()][-len(parts) :] == wanted
    ]
    name = ".".join(parts)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(
            f"table {name!r} in the view's query is not registered; use catalog.schema.table "
            "(SHOW TABLES lists them)"
        )
    raise InvalidArgumentError(
        f"table name {name!r} in the view's query is ambiguous "
        f"({', '.join(m.name for m in matches)}); use the three-part name"
    )


def prepare_view(
    catalog: Catalog,
    tree: exp.Expr,
    *,
    is_view: Any = None,
    current_catalog: str | None = None,
    current_schema: str | None = None,
) -> PreparedView:
    """Check a view's query and qualify its table names.

    :param is_view: ``name -> bool``: whether a three-part name is a view (views over views are refused).
    :raises InvalidArgumentError: a source that is not a provider table, a bad ``current_recipient`` call.
    :raises NotFoundError: an unknown table.
    """
    from sqlglot import exp

    tree = tree.copy()
    properties = sorted({prop for _, prop in _recipient_calls(tree)})
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    sources: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            raise InvalidArgumentError(
                f"a shared view reads provider tables only; {table.this.sql() if table.this else table.sql()} "
                "is not allowed in its query (no table_changes or file-reading functions)"
            )
        parts = [p.name for p in table.parts]
        if len(parts) == 1 and parts[0].lower() in ctes:
            continue
        lowered = [p.lower() for p in parts]
        if lowered == ["system", "access", "audit"]:
            raise InvalidArgumentError("a shared view cannot read system.access.audit")
        if len(parts) == 2 and lowered[0] == "delta":
            raise InvalidArgumentError(
                f"a shared view reads registered tables only; register delta.`{parts[1]}` with "
                "CREATE TABLE catalog.schema.table LOCATION '...' and use that name"
            )
        if table.args.get("version") is not None:
            raise InvalidArgumentError(
                "a shared view always reads the current version of its tables; remove VERSION AS OF / "
                "TIMESTAMP AS OF"
            )
        if len(parts) == 3 and is_view is not None and is_view(".".join(parts)):
            raise InvalidArgumentError(
                f"{'.'.join(parts)} is a view; a shared view reads provider tables only "
                "(write the other view's query into this one)"
            )
        info = _resolve(catalog, parts, current_catalog, current_schema)
        if info.name.lower() not in {s.lower() for s in sources}:
            sources.append(info.name)
        alias = table.args.get("alias")
        if alias is None:
            alias = exp.TableAlias(this=exp.to_identifier(table.name))
        table.replace(
            exp.Table(
                this=exp.to_identifier(info.table),
                db=exp.to_identifier(info.schema),
                catalog=exp.to_identifier(info.catalog),
                alias=alias,
            )
        )
    if not sources:
        raise InvalidArgumentError(
            "a shared view must read at least one provider table (FROM catalog.schema.table)"
        )
    return PreparedView(tree.sql(dialect=sqlglot_dialect()), tuple(sources), tuple(properties))


def run_view_query(
    catalog: Catalog,
    query: str,
    properties: Mapping[str, Any] | None,
    *,
    versions: Mapping[str, tuple[str, int | None]] | None = None,
    limit: int | None = None,
) -> pa.Table:
    """Run a stored view query for a recipient whose properties are ``properties`` (None: no recipient).

    :param versions: ``source name (lower case) -> (location, version)`` to read; default: each table's
        current location and latest version.
    :param limit: at most this many rows (``0``: just the schema).
    :returns: the result, ordered by every column.
    """
    import duckdb
    import sqlglot
    from deltalake import DeltaTable
    from sqlglot import exp

    tree = sqlglot.parse_one(query, read=sqlglot_dialect())
    props = {str(k).lower(): v for k, v in (properties or {}).items()}
    for node, prop in _recipient_calls(tree):
        value = props.get(prop)
        node.replace(exp.Literal.string(str(value)) if value is not None else exp.null())
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        registered: dict[str, str] = {}
        for table in list(tree.find_all(exp.Table)):
            parts = [p.name for p in table.parts]
            if len(parts) != 3:
                continue  # a CTE
            name = ".".join(parts).lower()
            if name not in registered:
                if versions is not None and name in versions:
                    location, version = versions[name]
                else:
                    location, version = catalog.get_table(name).location, None
                try:
                    # read whole (not a lazy dataset): DuckDB's filter pushdown into pyarrow fails on
                    # files whose strings are string_view (as deltalake's own writes store them)
                    data = DeltaTable(location, version=version).to_pyarrow_dataset().to_table()
                except Exception as exc:
                    raise InvalidArgumentError(
                        f"cannot read {name} for the view: {clean_error(exc)}"
                    ) from exc
                registered[name] = f"__view_src_{len(registered)}"
                con.register(registered[name], data)
            table.replace(
                exp.Table(
                    this=exp.to_identifier(registered[name], quoted=True),
                    alias=table.args.get("alias"),
                )
            )
        con.execute("SET enable_external_access = false")
        inner = tree.sql(dialect="duckdb")
        text = f"SELECT * FROM ({inner}) AS __view ORDER BY ALL"
        if limit is not None:
            text += f" LIMIT {int(limit)}"
        try:
            result = con.sql(text)
            if result is None:
                raise InvalidArgumentError("the view's query returned no result set")
            arrow = result.to_arrow_table()
        except duckdb.Error as exc:
            message = str(exc).split("\n")[0]
            for name, reg in registered.items():
                message = message.replace(reg, name)
            raise InvalidArgumentError(f"the view's query failed: {message}") from exc
        return normalize_arrow(arrow)
    finally:
        con.close()
