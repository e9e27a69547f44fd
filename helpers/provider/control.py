"""The provider's control plane: shares, their tables and comments, grants, table registration, ``USE``.

Every method is a thin, checked wrapper around :class:`helpers.catalog.Catalog` that returns a pandas
DataFrame shaped like Databricks' result of the statement.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

import pandas as pd

from helpers.catalog import PartitionClause, validate_name
from helpers.exceptions import InvalidArgumentError, NotFoundError
from helpers.provider.base import ProviderBase
from helpers.provider.frames import rows_frame, status_frame, to_utc
from helpers.sql import PartitionValue, parse_partition_spec

#: What :meth:`ControlPlane.add_table` takes as ``partition``: a ``PARTITION`` body as text, a
#: ``{column: value}`` dict, parsed values, or catalog clauses (or their ``(column, value, is_property)``).
PartitionItem: TypeAlias = PartitionValue | PartitionClause | tuple[Any, ...]
PartitionArg: TypeAlias = str | Mapping[str, Any] | Iterable[PartitionItem] | None


class ControlPlane(ProviderBase):
    """Shares, comments, grants and provider tables (the catalog side of the SQL)."""

    # ------------------------------------------------------------------------------------------
    # Shares
    # ------------------------------------------------------------------------------------------

    def create_share(
        self, name: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> pd.DataFrame:
        """``CREATE SHARE [IF NOT EXISTS] name [COMMENT '...']``."""
        existed = if_not_exists and self._share_exists(name)
        share = self.catalog.create_share(name, comment, if_not_exists=if_not_exists)
        if existed:
            return status_frame(
                f"share {share.name} already exists (IF NOT EXISTS): nothing changed"
            )
        return status_frame(f"share {share.name} created")

    def drop_share(self, name: str, *, if_exists: bool = False) -> pd.DataFrame:
        """``DROP SHARE [IF EXISTS] name`` (its entries and grants go with it; the tables stay)."""
        if self.catalog.drop_share(name, if_exists=if_exists):
            return status_frame(f"share {name} dropped")
        return status_frame(f"share {name} does not exist (IF EXISTS): nothing changed")

    def add_table(
        self,
        share: str,
        source: str,
        *,
        alias: str | None = None,
        comment: str | None = None,
        partition: PartitionArg = (),
        history: bool = False,
        start_version: int | None = None,
    ) -> pd.DataFrame:
        """``ALTER SHARE share ADD TABLE source [COMMENT] [PARTITION (...)] [AS alias] [WITH HISTORY]``.

        :param source: ``catalog.schema.table`` or ``delta.`/path``` (then ``alias`` is required).
        :param partition: a ``PARTITION`` body as text (``"region = 'EU'"`` or
            ``"region = CURRENT_RECIPIENT().region"``), a ``{column: value}`` dict, or clauses.
        """
        clauses = self._partition_clauses(partition)
        entry = self.catalog.add_table_to_share(
            share,
            source,
            alias=alias,
            comment=comment,
            history=history,
            partition=clauses,
            start_version=start_version,
        )
        return status_frame(f"table {entry.source} added to share {share} as {entry.alias}")

    def add_schema(self, share: str, source: str, *, history: bool = False) -> pd.DataFrame:
        """``ALTER SHARE share ADD SCHEMA catalog.schema`` (also covers tables registered later)."""
        entry = self.catalog.add_schema_to_share(share, source, history=history)
        count = len(self.catalog.list_tables(*entry.source.split(".")))
        return status_frame(
            f"schema {entry.source} added to share {share} ({count} table{'s' * (count != 1)} now)"
        )

    def remove_table(self, share: str, alias: str) -> pd.DataFrame:
        """``ALTER SHARE share REMOVE TABLE schema.table``."""
        self.catalog.remove_table_from_share(share, alias)
        return status_frame(f"table {alias} removed from share {share}")

    def remove_schema(self, share: str, schema: str) -> pd.DataFrame:
        """``ALTER SHARE share REMOVE SCHEMA [catalog.]schema``."""
        self.catalog.remove_schema_from_share(share, schema)
        return status_frame(f"schema {schema} removed from share {share}")

    def show_shares(self) -> pd.DataFrame:
        """``SHOW SHARES``: name, created_at, comment."""
        rows = [
            {"name": s.name, "created_at": to_utc(s.created_at), "comment": s.comment}
            for s in self.catalog.list_shares()
        ]
        return rows_frame(rows, ["name", "created_at", "comment"])

    def show_all_in_share(self, share: str) -> pd.DataFrame:
        """``SHOW ALL IN SHARE share``: one row per entry, and one per table a schema entry covers now."""
        rows: list[dict[str, Any]] = []
        for entry in self.catalog.share_entries(share):
            rows.append(
                {
                    "name": entry.alias,
                    "type": entry.kind.upper(),
                    "shared_object": entry.source,
                    "added_at": to_utc(entry.added_at),
                    "comment": entry.comment,
                    "partitions": ", ".join(str(c) for c in entry.partition_filter) or None,
                    "history_shared": entry.history,
                    "start_version": entry.start_version,
                    "via_schema": None,
                }
            )
            if entry.kind == "schema":
                catalog_name, schema_name = entry.source.split(".")
                for table in self.catalog.list_tables(catalog_name, schema_name):
                    rows.append(
                        {
                            "name": f"{entry.alias}.{table.table}",
                            "type": "TABLE",
                            "shared_object": table.name,
                            "added_at": to_utc(entry.added_at),
                            "comment": None,
                            "partitions": None,
                            "history_shared": entry.history,
                            "start_version": None,
                            "via_schema": entry.source,
                        }
                    )
        from helpers.catalog.views import view_store
        from helpers.provider.views import share_view_rows

        rows += share_view_rows(view_store(self.catalog), share)  # views (helpers.provider.views)
        columns = [
            "name",
            "type",
            "shared_object",
            "added_at",
            "comment",
            "partitions",
            "history_shared",
            "start_version",
            "via_schema",
        ]
        frame = rows_frame(rows, columns)
        frame["start_version"] = frame["start_version"].astype("Int64")
        return frame

    def describe_share(self, name: str) -> pd.DataFrame:
        """``DESCRIBE SHARE name``: name, created_at, comment, tables, recipients."""
        share = self.catalog.get_share(name)
        tables = len(self.catalog.shared_tables(share.name))
        recipients = len(self.catalog.grants_on_share(share.name))
        return rows_frame(
            [
                {
                    "name": share.name,
                    "created_at": to_utc(share.created_at),
                    "comment": share.comment,
                    "tables": tables,
                    "recipients": recipients,
                }
            ],
            ["name", "created_at", "comment", "tables", "recipients"],
        )

    def set_comment(self, kind: str, name: str, comment: str | None) -> pd.DataFrame:
        """``COMMENT ON SHARE|RECIPIENT name IS 'text' | NULL``: replace the comment (NULL removes it)."""
        if kind not in ("share", "recipient"):
            raise InvalidArgumentError(f"COMMENT ON takes SHARE or RECIPIENT, not {kind!r}")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 65536):
            raise InvalidArgumentError("a comment is text of at most 65536 characters")
        # validates the name and raises NotFoundError like every other statement
        obj = self.catalog.get_share(name) if kind == "share" else self.catalog.get_recipient(name)
        self.catalog.set_comment(kind, name, comment)
        what = "removed" if comment is None else "set"
        return status_frame(f"comment of {kind} {obj.name} {what}")

    def _share_exists(self, name: str) -> bool:
        try:
            self.catalog.get_share(name)
        except NotFoundError:
            return False
        return True

    def _partition_clauses(
        self, partition: PartitionArg
    ) -> tuple[PartitionClause | tuple[Any, ...], ...]:
        """Coerce the ``partition`` argument of :meth:`add_table` into catalog ``PartitionClause`` objects."""
        if partition is None or partition == () or partition == []:
            return ()
        if isinstance(partition, str):
            partition = parse_partition_spec(partition)
        if isinstance(partition, Mapping):
            return tuple(PartitionClause(str(k), v, False) for k, v in partition.items())
        out: list[PartitionClause | tuple[Any, ...]] = []
        for item in partition:
            if isinstance(item, PartitionValue):
                out.append(PartitionClause(item.column, item.value, item.is_property))
            else:
                out.append(item)
        return tuple(out)

    # ------------------------------------------------------------------------------------------
    # Grants
    # ------------------------------------------------------------------------------------------

    def grant(self, share: str, recipient: str) -> pd.DataFrame:
        """``GRANT SELECT ON SHARE share TO RECIPIENT recipient`` (granting twice is harmless)."""
        g = self.catalog.grant(share, recipient)
        return status_frame(f"granted SELECT on share {g.share} to recipient {g.recipient}")

    def revoke(self, share: str, recipient: str) -> pd.DataFrame:
        """``REVOKE SELECT ON SHARE share FROM RECIPIENT recipient``."""
        if self.catalog.revoke(share, recipient):
            return status_frame(f"revoked SELECT on share {share} from recipient {recipient}")
        return status_frame(f"recipient {recipient} had no grant on share {share}: nothing changed")

    def show_grants_on_share(self, share: str) -> pd.DataFrame:
        """``SHOW GRANTS ON SHARE share``: recipient, privilege, share, granted_at."""
        rows = [
            {
                "recipient": g.recipient,
                "privilege": "SELECT",
                "share": g.share,
                "granted_at": to_utc(g.granted_at),
            }
            for g in self.catalog.grants_on_share(share)
        ]
        return rows_frame(rows, ["recipient", "privilege", "share", "granted_at"])

    def show_grants_to_recipient(self, recipient: str) -> pd.DataFrame:
        """``SHOW GRANTS TO RECIPIENT recipient``: share, privilege, recipient, granted_at."""
        rows = [
            {
                "share": g.share,
                "privilege": "SELECT",
                "recipient": g.recipient,
                "granted_at": to_utc(g.granted_at),
            }
            for g in self.catalog.grants_to_recipient(recipient)
        ]
        return rows_frame(rows, ["share", "privilege", "recipient", "granted_at"])

    # ------------------------------------------------------------------------------------------
    # Provider tables
    # ------------------------------------------------------------------------------------------

    def register_table(
        self,
        name: str,
        location: str | os.PathLike[str],
        *,
        replace: bool = False,
        if_not_exists: bool = False,
    ) -> pd.DataFrame:
        """``CREATE [OR REPLACE] TABLE [IF NOT EXISTS] c.s.t LOCATION '/path'``: register a Delta table."""
        if if_not_exists and not replace:
            try:
                existing = self.catalog.get_table(name)
            except NotFoundError:
                pass
            else:
                return status_frame(
                    f"table {existing.name} is already registered at {existing.location} "
                    "(IF NOT EXISTS): nothing changed"
                )
        info = self.catalog.register_table(name, location, replace=replace)
        return status_frame(f"table {info.name} registered at {info.location}")

    def use(self, catalog: str | None = None, schema: str | None = None) -> pd.DataFrame:
        """``USE CATALOG c`` / ``USE SCHEMA [c.]s``: where one- and two-part table names are looked up first.

        Catalogs and schemas exist implicitly in the lab (through the tables registered under them), so
        an unknown one is accepted; ``SHOW TABLES`` then lists nothing.
        """
        for value, kind in ((catalog, "catalog"), (schema, "schema")):
            if value is not None:
                validate_name(value, kind, allow_dot=False)
        if catalog is not None:
            self.current_catalog = catalog
            if schema is None:
                self.current_schema = None
        if schema is not None:
            self.current_schema = schema
        where = ".".join(p for p in (self.current_catalog, self.current_schema) if p)
        return status_frame(f"using {where}")

    def show_tables(self, catalog: str | None = None, schema: str | None = None) -> pd.DataFrame:
        """``SHOW TABLES [IN catalog[.schema]]``: catalog, schema, table, location.

        Without ``IN``, the ``USE`` defaults apply.
        """
        if catalog is None:
            catalog, schema = self.current_catalog, self.current_schema
            if catalog is None and schema is not None:  # USE SCHEMA s alone: any catalog's s
                return self.show_tables_in_schema(schema)
        rows = [
            {"catalog": t.catalog, "schema": t.schema, "table": t.table, "location": t.location}
            for t in self.catalog.list_tables(catalog, schema)
        ]
        return rows_frame(rows, ["catalog", "schema", "table", "location"])

    def show_tables_in_schema(self, schema: str) -> pd.DataFrame:
        """Tables whose schema is ``schema``, in any catalog."""
        rows = [
            {"catalog": t.catalog, "schema": t.schema, "table": t.table, "location": t.location}
            for t in self.catalog.list_tables()
            if t.schema.lower() == schema.lower()
        ]
        return rows_frame(rows, ["catalog", "schema", "table", "location"])
