"""Discovery: list shares, schemas and tables (paged), a table's version and its metadata."""

from __future__ import annotations

from typing import Any

from helpers.catalog import Recipient, SharedTable
from helpers.catalog.names import name_key
from helpers.server.audit import AuditInfo
from helpers.server.errors import bad_request, not_found
from helpers.server.limits import MAX_LIST_RESULTS, PAGE_TOKEN_TTL_SECONDS
from helpers.server.params import Params, choose_format, int_param, partition_predicate
from helpers.server.protocol import SchemaItem, ShareItem, TableItem, list_page
from helpers.server.service.changes import visible_size
from helpers.server.service.core import ServiceCore
from helpers.storage.delta_log import parse_timestamp

__all__ = ["DiscoveryService"]


class DiscoveryService(ServiceCore):
    """The listing routes and ``/version`` and ``/metadata``."""

    def _page(
        self, items: list[Any], params: Params, binding: dict[str, Any]
    ) -> tuple[list[Any], str | None]:
        max_results = int_param(params.get("maxResults"), "maxResults", minimum=0)
        if max_results is None:
            max_results = MAX_LIST_RESULTS
        if max_results > MAX_LIST_RESULTS:
            raise bad_request(f"maxResults must be at most {MAX_LIST_RESULTS}, got {max_results}")
        offset = 0
        token = params.get("pageToken")
        if token:
            payload = self.signer.read_token("list", token, "nextPageToken")
            if payload.get("b") != binding:
                raise bad_request("invalid 'nextPageToken': it belongs to another listing")
            offset = int(payload.get("o", 0))
        page = items[offset : offset + max_results]
        nxt = None
        if offset + max_results < len(items):
            nxt = self.signer.make_token(
                "list", {"b": binding, "o": offset + max_results}, PAGE_TOKEN_TTL_SECONDS
            )
        return page, nxt

    def listed_tables(self, recipient: Recipient, share: str) -> list[SharedTable]:
        """What the table listings show ``recipient`` in ``share`` (views add theirs)."""
        return self.catalog.shared_tables(share)

    def listed_schemas(self, share: str) -> list[str]:
        """The schema names the listings show in ``share`` (views add theirs)."""
        return self.catalog.shared_schemas(share)

    def list_shares(self, recipient: Recipient, params: Params) -> dict[str, Any]:
        shares = [ShareItem(s.name, s.id) for s in self.catalog.recipient_shares(recipient.name)]
        page, nxt = self._page(shares, params, {"l": "shares", "r": recipient.id})
        return list_page(page, nxt)

    def get_share(self, recipient: Recipient, share: str) -> dict[str, Any]:
        s = self.granted_share(recipient, share)
        return {"share": ShareItem(s.name, s.id).to_json()}

    def list_schemas(self, recipient: Recipient, share: str, params: Params) -> dict[str, Any]:
        s = self.granted_share(recipient, share)
        schemas = [SchemaItem(name, s.name) for name in self.listed_schemas(s.name)]
        page, nxt = self._page(schemas, params, {"l": "schemas", "s": s.id})
        return list_page(page, nxt)

    def list_tables(
        self, recipient: Recipient, share: str, schema: str | None, params: Params
    ) -> dict[str, Any]:
        s = self.granted_share(recipient, share)
        if schema is not None:
            known = {name_key(n): n for n in self.listed_schemas(s.name)}
            if name_key(schema) not in known:
                raise not_found(f"Schema '{schema}' does not exist in share '{share}'")
        tables = [
            TableItem(t.name, t.schema, s.name, t.id, s.id)
            for t in self.listed_tables(recipient, s.name)
            if schema is None or name_key(t.schema) == name_key(schema)
        ]
        binding = {
            "l": "tables" if schema is not None else "all-tables",
            "s": s.id,
            "c": name_key(schema or ""),
        }
        page, nxt = self._page(tables, params, binding)
        return list_page(page, nxt)

    # -------------------------------------------------------------- version / metadata
    def table_version(
        self, recipient: Recipient, names: tuple[str, str, str], params: Params, info: AuditInfo
    ) -> int:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        ts = params.get("startingTimestamp")
        if ts is not None:
            if not table.history:
                raise bad_request(
                    "startingTimestamp needs history sharing; the provider must share this table WITH HISTORY"
                )
            version = log_.version_at_or_after(
                parse_timestamp(ts, "startingTimestamp"), before_first_ok=True, text=ts
            )
        else:
            version = log_.latest_version()
        info.version = version
        return version

    def metadata(
        self,
        recipient: Recipient,
        names: tuple[str, str, str],
        params: Params,
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> tuple[dict[str, str], list[str]]:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        version, travelled = self.history_version(
            table, log_, params.get("version"), params.get("timestamp")
        )
        snapshot = log_.snapshot(version)
        fmt = choose_format(caps, snapshot)
        info.version, info.response_format = snapshot.version, fmt
        lines = self.head_lines(
            table,
            snapshot,
            fmt,
            snapshot.version if travelled else None,
            visible=visible_size(snapshot, partition_predicate(table, recipient)),
        )
        return self.response_headers(snapshot.version, fmt, False), lines
