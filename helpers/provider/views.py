"""Shared views and IP access lists on the provider: one method per statement of :mod:`helpers.sql.views`.

A view is stored in the catalog (:mod:`helpers.catalog.views`) with its query checked and its table
names qualified (:mod:`helpers.provider.viewsql`); the sharing server materializes it per recipient when
a recipient reads it. :meth:`ViewStatements.view_as_recipient` shows the provider what a recipient gets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from helpers.catalog.views import ViewInfo, ViewStore, view_store
from helpers.exceptions import InvalidArgumentError
from helpers.provider.base import ProviderBase
from helpers.provider.frames import arrow_to_pandas, rows_frame, status_frame, to_utc
from helpers.provider.viewsql import prepare_view, run_view_query
from helpers.sql.views import (
    AlterRecipientSetIpAccessList,
    AlterRecipientUnsetIpAccessList,
    AlterShareAddView,
    AlterShareRemoveView,
    CreateView,
    DescribeView,
    DropView,
    ShowViews,
)

__all__ = ["VIEW_HANDLERS", "ViewStatements", "ip_access_rows", "share_view_rows"]


def share_view_rows(store: ViewStore, share: str) -> list[dict[str, Any]]:
    """``SHOW ALL IN SHARE`` rows of a share's views (type ``VIEW``)."""
    return [
        {
            "name": e.alias,
            "type": "VIEW",
            "shared_object": e.view.name,
            "added_at": to_utc(e.added_at),
            "comment": e.comment,
            "partitions": None,
            "history_shared": False,
            "start_version": None,
            "via_schema": None,
        }
        for e in store.share_views(share)
    ]


def ip_access_rows(store: ViewStore, recipient_id: str) -> list[tuple[str, Any]]:
    """The ``DESCRIBE RECIPIENT`` row of a recipient's IP access list."""
    entries = store.ip_access_list(recipient_id)
    value = ", ".join(entries) if entries else "none (every address may connect)"
    return [("ip_access_list", value)]


class ViewStatements(ProviderBase):
    """``CREATE VIEW`` ... ``ALTER RECIPIENT ... IP ACCESS LIST`` on the provider."""

    @property
    def views(self) -> ViewStore:
        """The catalog's views and IP access lists."""
        return view_store(self.catalog)

    # -- views -----------------------------------------------------------------------------------

    def create_view(
        self,
        name: str,
        query: Any,
        *,
        comment: str | None = None,
        replace: bool = False,
        if_not_exists: bool = False,
    ) -> pd.DataFrame:
        """``CREATE [OR REPLACE] VIEW [IF NOT EXISTS] c.s.v [COMMENT ...] AS query``.

        :param query: the query text, or its sqlglot tree (as the parser gives it).
        :raises InvalidArgumentError: a query that reads anything but provider tables, or fails to run.
        """
        import sqlglot

        from helpers.sql import sqlglot_dialect

        tree = query
        if isinstance(query, str):
            try:
                tree = sqlglot.parse_one(query, read=sqlglot_dialect())
            except sqlglot.errors.ParseError as exc:
                raise InvalidArgumentError(f"the view's query does not parse: {exc}") from exc
        if if_not_exists and self.views.find_view(name) is not None:
            return status_frame(f"view {name} already exists (IF NOT EXISTS): nothing changed")
        store = self.views
        prepared = prepare_view(
            self.catalog,
            tree,
            is_view=lambda n: store.find_view(n) is not None,
            current_catalog=self.current_catalog,
            current_schema=self.current_schema,
        )
        # run it once (no recipient, no rows) so a query DuckDB rejects fails now, not for a recipient
        schema = run_view_query(self.catalog, prepared.query, None, limit=0).schema
        columns = [(f.name, str(f.type)) for f in schema]
        if len({c.lower() for c, _ in columns}) != len(columns):
            raise InvalidArgumentError(
                "the view's columns must have distinct names; give the duplicates aliases (AS name)"
            )
        view, created = store.create_view(
            name,
            prepared.query,
            sources=prepared.sources,
            properties=prepared.properties,
            columns=columns,
            comment=comment,
            replace=replace,
            if_not_exists=if_not_exists,
        )
        if not created:
            return status_frame(f"view {view.name} already exists (IF NOT EXISTS): nothing changed")
        uses = (
            f"; uses current_recipient({', '.join(prepared.properties)})"
            if prepared.properties
            else ""
        )
        return status_frame(
            f"view {view.name} {'replaced' if replace else 'created'} over {', '.join(view.sources)}{uses}"
        )

    def drop_view(self, name: str, *, if_exists: bool = False) -> pd.DataFrame:
        """``DROP VIEW [IF EXISTS] c.s.v`` (refused while a share holds it)."""
        if self.views.drop_view(name, if_exists=if_exists):
            return status_frame(f"view {name} dropped")
        return status_frame(f"view {name} does not exist (IF EXISTS): nothing changed")

    def show_views(self, catalog: str | None = None, schema: str | None = None) -> pd.DataFrame:
        """``SHOW VIEWS [IN c[.s]]``: name, sources, recipient properties used, comment, created_at."""
        rows = [
            {
                "name": v.name,
                "sources": ", ".join(v.sources),
                "recipient_properties": ", ".join(v.properties) or None,
                "comment": v.comment,
                "created_at": to_utc(v.created_at),
            }
            for v in self.views.list_views(catalog, schema)
        ]
        return rows_frame(
            rows, ["name", "sources", "recipient_properties", "comment", "created_at"]
        )

    def describe_view(self, name: str) -> pd.DataFrame:
        """``DESCRIBE VIEW c.s.v``: ``info_name`` / ``info_value`` rows (query, sources, columns, shares)."""
        view = self.views.get_view(name)
        info: list[tuple[str, Any]] = [
            ("view_name", view.name),
            ("view_id", view.id),
            ("query", view.query),
            ("sources", ", ".join(view.sources)),
            ("recipient_properties", ", ".join(view.properties) or None),
            ("comment", view.comment),
            ("created_at", to_utc(view.created_at)),
        ]
        info += [(f"column.{col}", kind) for col, kind in view.columns]
        info.append(("shared_in", ", ".join(self.views.shares_of_view(view.id)) or None))
        return pd.DataFrame(info, columns=["info_name", "info_value"])

    def view_as_recipient(self, name: str, recipient: str) -> pd.DataFrame:
        """The rows and columns ``recipient`` gets from view ``name`` (what the server would serve)."""
        view: ViewInfo = self.views.get_view(name)
        props = self.catalog.get_recipient(recipient).properties
        return arrow_to_pandas(run_view_query(self.catalog, view.query, props))

    # -- shares ----------------------------------------------------------------------------------

    def add_view(
        self, share: str, view: str, *, alias: str | None = None, comment: str | None = None
    ) -> pd.DataFrame:
        """``ALTER SHARE share ADD VIEW c.s.v [AS schema.name] [COMMENT 'text']``."""
        entry = self.views.add_view_to_share(share, view, alias=alias, comment=comment)
        return status_frame(f"view {entry.view.name} added to share {entry.share} as {entry.alias}")

    def remove_view(self, share: str, alias: str) -> pd.DataFrame:
        """``ALTER SHARE share REMOVE VIEW schema.name``."""
        self.views.remove_view_from_share(share, alias)
        return status_frame(f"view {alias} removed from share {share}")

    # -- IP access lists -------------------------------------------------------------------------

    def set_ip_access_list(self, recipient: str, entries: Iterable[str]) -> pd.DataFrame:
        """``ALTER RECIPIENT r SET IP ACCESS LIST ('192.0.2.0/24', ...)``: only these addresses may connect."""
        stored = self.views.set_ip_access_list(recipient, entries)
        return status_frame(
            f"recipient {recipient} may connect only from {', '.join(stored)} "
            "(other addresses get 403 on every endpoint)"
        )

    def unset_ip_access_list(self, recipient: str) -> pd.DataFrame:
        """``ALTER RECIPIENT r UNSET IP ACCESS LIST``: every address may connect again."""
        had = self.views.unset_ip_access_list(recipient)
        if had:
            return status_frame(f"recipient {recipient} may connect from any address again")
        return status_frame(f"recipient {recipient} had no IP access list: nothing changed")


#: Statement class -> how a :class:`ViewStatements` runs it (merged into the executor's table).
VIEW_HANDLERS: dict[type, Any] = {
    CreateView: lambda p, s: p.create_view(
        s.name,
        s.expression if s.expression is not None else s.query,
        comment=s.comment,
        replace=s.replace,
        if_not_exists=s.if_not_exists,
    ),
    DropView: lambda p, s: p.drop_view(s.name, if_exists=s.if_exists),
    ShowViews: lambda p, s: p.show_views(s.catalog, s.schema),
    DescribeView: lambda p, s: p.describe_view(s.name),
    AlterShareAddView: lambda p, s: p.add_view(s.share, s.source, alias=s.alias, comment=s.comment),
    AlterShareRemoveView: lambda p, s: p.remove_view(s.share, s.alias),
    AlterRecipientSetIpAccessList: lambda p, s: p.set_ip_access_list(s.name, s.entries),
    AlterRecipientUnsetIpAccessList: lambda p, s: p.unset_ip_access_list(s.name),
}
