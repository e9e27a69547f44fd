"""Shared views and IP access lists in the sharing service.

- A view a share offers as ``schema.name`` is served to each recipient as the Delta table of *its* result
  (:mod:`helpers.server.viewcache`), through the same endpoints as a table: listings, ``/version``,
  ``/metadata``, ``/query`` (parquet and delta formats, hints, paging) and the signed downloads. Its table
  id is per (view entry, recipient), so a file URL minted for one recipient never resolves to another's
  files. A table of the same name in the share wins over a view (ADD VIEW refuses such a clash).
- A view has no history: time travel, ``startingVersion``, ``startingTimestamp`` and ``/changes`` are
  refused with 400 ``UNSUPPORTED_OPERATION``, as Databricks refuses them on shared views.
- A recipient with an IP access list is refused (403 ``PERMISSION_DENIED``) from any other address, on
  every endpoint: the protocol routes, the file downloads (checked for the recipient the URL was signed for)
  and the activation link (the redemption is rolled back). The refusal is an audit row like any other
  (status 403, the client's address). The address is the TCP peer's: ``X-Forwarded-For`` is never trusted.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from helpers.catalog import Recipient, SharedTable
from helpers.catalog.views import SharedViewEntry, ViewStore, address_allowed, view_store
from helpers.exceptions import InvalidNameError, NotFoundError, SharelabError
from helpers.server.audit import AuditInfo
from helpers.server.errors import ApiError, bad_request
from helpers.server.params import Params
from helpers.server.service.discovery import DiscoveryService
from helpers.server.service.query import QueryService
from helpers.server.viewcache import ViewMaterializer
from helpers.storage.delta_log import DeltaLog

__all__ = ["SharedView", "ViewsService", "view_table_id"]

log = logging.getLogger("sharelab.server")

_VIEW_NS = uuid.UUID("5b0c3f55-8a35-4d7e-9f0e-3c1f6c2b7a18")


@dataclass(frozen=True)
class SharedView(SharedTable):
    """A shared view as one recipient sees it: ``location`` is that recipient's materialized table."""

    view: str = ""
    recipient_id: str = ""


def view_table_id(entry: SharedViewEntry, recipient: Recipient) -> str:
    """The table id of a shared view for one recipient (stable; different for every recipient)."""
    return str(uuid.uuid5(_VIEW_NS, f"{entry.id}/{recipient.id}"))


def _no_history(table: SharedTable | tuple[str, str, str], what: str) -> ApiError:
    if isinstance(table, tuple):
        full = ".".join(table)
    else:
        full = f"{table.share}.{table.schema}.{table.name}"
    return bad_request(
        f"Table '{full}' is a shared view, which has no history: {what} is not available for it; "
        "read its current version (no version, timestamp or startingVersion)",
        "UNSUPPORTED_OPERATION",
    )


class ViewsService(DiscoveryService, QueryService):
    """Views and IP access lists on top of the discovery and query routes."""

    @property
    def view_store(self) -> ViewStore:
        store: ViewStore | None = self.__dict__.get("_view_store")
        if store is None:
            store = view_store(self.catalog)
            self.__dict__["_view_store"] = store
        return store

    def direct_links(self, recipient: Recipient) -> bool:
        """Not for a recipient with an IP access list: the server checks each of its downloads."""
        return (
            super().direct_links(recipient) and self.view_store.ip_access_list(recipient.id) is None
        )

    @property
    def materializer(self) -> ViewMaterializer:
        found: ViewMaterializer | None = self.__dict__.get("_materializer")
        if found is None:
            keep = (
                -(-self.url_ttl_ms // 3_600_000) + 1
            )  # the URL lifetime in hours, rounded up, + 1
            found = ViewMaterializer(self.home.path / "views", self.catalog, keep_hours=keep)
            self.__dict__["_materializer"] = found
        return found

    # -------------------------------------------------------------- lookups
    def _view_table(
        self, entry: SharedViewEntry, recipient: Recipient, location: str
    ) -> SharedView:
        return SharedView(
            share=entry.share,
            schema=entry.schema,
            name=entry.name,
            location=location,
            history=False,
            start_version=None,
            partition_filter=(),
            id=view_table_id(entry, recipient),
            comment=entry.comment,
            source=entry.view.name,
            share_id=entry.share_id,
            view=entry.view.name,
            recipient_id=recipient.id,
        )

    def shared_view_entry(self, share: str, schema: str, table: str) -> SharedViewEntry | None:
        """The view a share offers under this name (None when it is a table, or nothing)."""
        entry = self.view_store.shared_view(share, schema, table)
        if entry is None:
            return None
        try:
            self.catalog.get_shared_table(share, schema, table)
        except (NotFoundError, InvalidNameError):
            return entry
        return None  # a table of the same name wins

    def shared_table(
        self, recipient: Recipient, share: str, schema: str, table: str
    ) -> SharedTable:
        try:
            return super().shared_table(recipient, share, schema, table)
        except ApiError as exc:
            if exc.status != 404:
                raise
            entry = self.view_store.shared_view(share, schema, table)
            if entry is None:
                raise
        self.granted_share(recipient, share)
        try:
            built = self.materializer.materialize(entry.view, recipient)
        except SharelabError as exc:  # a source table dropped or changed behind the view
            log.warning("shared view %s for %s: %s", entry.view.name, recipient.name, exc)
            raise ApiError(
                400,
                "RESOURCE_DOES_NOT_EXIST",
                f"Table '{share}.{schema}.{table}' (a shared view) cannot be read now: the provider's "
                "tables behind it changed; ask the provider to fix the view",
            ) from None
        return self._view_table(entry, recipient, built.path)

    def download_table(self, share: str, schema: str, table: str, recipient: str) -> SharedTable:
        """The table a signed URL's file belongs to; for a view, the recipient's materialized table.

        :raises NotFoundError: nothing of that name, the view is not granted to ``recipient`` any more,
            or it was never materialized for it.
        """
        try:
            return self.cached_shared_table(share, schema, table)
        except (NotFoundError, InvalidNameError):
            entry = self.view_store.shared_view(share, schema, table)
            if entry is None or not recipient:
                raise
        found = self.catalog.get_recipient(recipient)
        if not self.catalog.has_grant(entry.share, found.name):
            raise NotFoundError(f"share {entry.share!r} is not granted to {recipient!r}")
        path = self.materializer.current_path(entry.view, found)
        if path is None:
            raise NotFoundError(f"view {entry.view.name!r} was never read by {recipient!r}")
        return self._view_table(entry, found, path)

    # -------------------------------------------------------------- listings
    def listed_tables(self, recipient: Recipient, share: str) -> list[SharedTable]:
        tables = super().listed_tables(recipient, share)
        taken = {(t.schema.lower(), t.name.lower()) for t in tables}
        for entry in self.view_store.share_views(share):
            if (entry.schema.lower(), entry.name.lower()) not in taken:
                tables.append(self._view_table(entry, recipient, ""))
        return sorted(tables, key=lambda t: (t.schema.lower(), t.name.lower()))

    def listed_schemas(self, share: str) -> list[str]:
        names = {n.lower(): n for n in super().listed_schemas(share)}
        for entry in self.view_store.share_views(share):
            names.setdefault(entry.schema.lower(), entry.schema)
        return sorted(names.values(), key=str.lower)

    # -------------------------------------------------------------- no history for views
    def history_version(
        self, table: SharedTable, log_: DeltaLog, version: object, timestamp: object
    ) -> tuple[int | None, bool]:
        if isinstance(table, SharedView) and (version is not None or timestamp is not None):
            raise _no_history(table, "time travel (version or timestamp)")
        return super().history_version(table, log_, version, timestamp)

    def table_version(
        self, recipient: Recipient, names: tuple[str, str, str], params: Params, info: AuditInfo
    ) -> int:
        if params.get("startingTimestamp") is not None and self.shared_view_entry(*names):
            self.granted_share(recipient, names[0])
            raise _no_history(names, "startingTimestamp")
        return super().table_version(recipient, names, params, info)

    def query(
        self,
        request: Request,
        recipient: Recipient,
        names: tuple[str, str, str],
        body: dict[str, Any],
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> Any:
        if body.get("startingVersion") is not None and self.shared_view_entry(*names):
            self.granted_share(recipient, names[0])
            raise _no_history(names, "startingVersion (streaming)")
        return super().query(request, recipient, names, body, caps, info)

    def changes(
        self,
        request: Request,
        recipient: Recipient,
        names: tuple[str, str, str],
        params: Params,
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> Any:
        if self.shared_view_entry(*names):
            self.granted_share(recipient, names[0])
            raise _no_history(names, "the change data feed")
        return super().changes(request, recipient, names, params, caps, info)

    # -------------------------------------------------------------- IP access lists
    def check_address(self, request: Request, recipient: Recipient | str | None) -> None:
        """403 unless the request comes from an address in the recipient's IP access list (if it has one)."""
        if not recipient:
            return
        if isinstance(recipient, str):
            try:
                recipient = self.catalog.get_recipient(recipient)
            except (NotFoundError, InvalidNameError):
                return
        entries = self.view_store.ip_access_list(recipient.id)
        if entries is None:
            return
        host = request.client.host if request.client else None
        if not address_allowed(host, entries):
            raise ApiError(
                403,
                "PERMISSION_DENIED",
                f"Requests for recipient '{recipient.name}' are not allowed from "
                f"{host or 'an unknown address'}: it is not in the recipient's IP access list; "
                "connect from an allowed network or ask the provider to add this address",
            )
