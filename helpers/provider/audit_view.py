"""``system.access.audit`` in two shapes at once: the lab's columns and Databricks' audit-log columns.

The lab's own columns (:data:`helpers.catalog.AUDIT_COLUMNS`: ``recipient``, ``share``, ``action``, ...) stay
as they are; these columns are added so that queries written for a Databricks workspace run unchanged:

* ``event_date`` (DATE, UTC) beside ``event_time``;
* ``service_name``: ``unityCatalog`` (Databricks logs Delta Sharing events under Unity Catalog);
* ``action_name``: Databricks' name of what the server did (:data:`DATABRICKS_ACTIONS`);
* ``request_params``: ``MAP<STRING, STRING>`` with ``recipient_name``, ``share_name`` (and ``share``),
  ``schema``, ``name``, ``table_full_name`` (the provider table ``catalog.schema.table`` behind the shared
  name, when the share still has it), ``version``, ``startingVersion``, ``endingVersion``, ``numFiles``,
  ``predicateHints``, ``limitHint``, ``responseFormat`` (only the keys that apply);
* ``response``: ``STRUCT<status_code INT, error_message STRING, result STRING>``;
* ``source_ip_address`` (the client address); ``user_agent`` is the same column in both shapes.

So ``request_params.recipient_name`` or ``request_params['share_name']`` and ``response.status_code`` work
in a ``SELECT`` as in Databricks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DATABRICKS_ACTIONS", "DATABRICKS_COLUMNS", "audit_arrow", "audit_pandas"]

#: The lab server's action → Databricks' ``action_name`` for the same request.
DATABRICKS_ACTIONS = {
    "listShares": "deltaSharingListShares",
    "getShare": "deltaSharingGetShare",
    "listSchemas": "deltaSharingListSchemas",
    "listTables": "deltaSharingListTables",
    "listAllTables": "deltaSharingListAllTables",
    "getTableVersion": "deltaSharingGetTableVersion",
    "getTableMetadata": "deltaSharingGetTableMetadata",
    "queryTable": "deltaSharingQueryTable",
    "queryTableChanges": "deltaSharingQueryTableChanges",
    "activate": "retrieveRecipientToken",
    # Databricks hands out pre-signed cloud-storage URLs and logs no download; the lab serves the files.
    "downloadFile": "deltaSharingDownloadFile",
}
#: The columns added to the lab's, in order.
DATABRICKS_COLUMNS = (
    "event_date",
    "service_name",
    "action_name",
    "request_params",
    "response",
    "source_ip_address",
)

#: ``(share, schema, table)`` → the provider table behind it, or None.
SourceLookup = Callable[[str, str, str], str | None]


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _params(row: dict[str, Any], source: SourceLookup) -> list[tuple[str, str]]:
    share, schema, table = row["share"], row["schema"], row["table"]
    params: dict[str, str | None] = {
        "recipient_name": _text(row["recipient"]),
        "share_name": _text(share),
        "share": _text(share),
        "schema": _text(schema),
        "name": _text(table),
    }
    if share and schema and table:
        params["table_full_name"] = source(share, schema, table)
    params["version"] = _text(row["version"])
    params["startingVersion"] = _text(row["start_version"])
    params["endingVersion"] = _text(row["end_version"])
    params["numFiles"] = _text(row["num_files"])
    if row["action"] in ("queryTable", "queryTableChanges"):
        params["predicateHints"] = _text(bool(row["has_predicate_hints"]))
        params["limitHint"] = _text(bool(row["has_limit_hint"]))
    params["responseFormat"] = _text(row["response_format"])
    return [(k, v) for k, v in params.items() if v is not None]


def audit_arrow(frame: pd.DataFrame, source: SourceLookup) -> pa.Table:
    """The lab's audit frame plus Databricks' columns, as Arrow (MAP and STRUCT types for DuckDB)."""
    import pyarrow as pa

    base = pa.Table.from_pandas(frame, preserve_index=False)
    records = frame.to_dict("records")
    dates = pa.array([r["event_time"].date() for r in records], pa.date32())
    actions = [DATABRICKS_ACTIONS.get(str(r["action"]), str(r["action"])) for r in records]
    params = pa.array([_params(r, source) for r in records], pa.map_(pa.string(), pa.string()))
    response_type = pa.struct(
        [("status_code", pa.int32()), ("error_message", pa.string()), ("result", pa.string())]
    )
    responses = pa.array(
        [
            {
                "status_code": None if pd.isna(r["status_code"]) else int(r["status_code"]),
                "error_message": None,
                "result": None,
            }
            for r in records
        ],
        response_type,
    )
    columns = {
        "event_date": dates,
        "service_name": pa.array(["unityCatalog"] * len(records), pa.string()),
        "action_name": pa.array(actions, pa.string()),
        "request_params": params,
        "response": responses,
        "source_ip_address": pa.array([_text(r["client_address"]) for r in records], pa.string()),
    }
    for name, values in columns.items():
        base = base.append_column(name, values)
    return base


def audit_pandas(frame: pd.DataFrame, source: SourceLookup) -> pd.DataFrame:
    """:func:`audit_arrow` as pandas: ``request_params`` as dicts, ``response`` as dicts."""
    out = frame.copy()
    records = frame.to_dict("records")
    out["event_date"] = [r["event_time"].date() for r in records]
    out["service_name"] = "unityCatalog"
    out["action_name"] = [
        DATABRICKS_ACTIONS.get(str(r["action"]), str(r["action"])) for r in records
    ]
    out["request_params"] = [dict(_params(r, source)) for r in records]
    out["response"] = [
        {
            "status_code": None if pd.isna(r["status_code"]) else int(r["status_code"]),
            "error_message": None,
            "result": None,
        }
        for r in records
    ]
    out["source_ip_address"] = [_text(r["client_address"]) for r in records]
    return out


def source_lookup(catalog: Any) -> SourceLookup:
    """A :data:`SourceLookup` over the catalog's shares now (each share read once)."""
    from helpers.exceptions import SharelabError

    cache: dict[str, dict[tuple[str, str], str]] = {}

    def lookup(share: str, schema: str, table: str) -> str | None:
        key = share.lower()
        if key not in cache:
            try:
                tables = catalog.shared_tables(share)
            except SharelabError:
                tables = []
            cache[key] = {(t.schema.lower(), t.name.lower()): t.source for t in tables}
        return cache[key].get((schema.lower(), table.lower()))

    return lookup
