"""The catalog's records: frozen dataclasses built from its rows (never the rows themselves)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from helpers.catalog import clock

__all__ = [
    "AUDIT_COLUMNS",
    "AuditEvent",
    "Grant",
    "IssuedToken",
    "PartitionClause",
    "Recipient",
    "Share",
    "ShareEntry",
    "SharedTable",
    "TableInfo",
    "TokenInfo",
    "RowLike",
    "filter_from_json",
]

#: A catalog row: what ``from_row`` reads (a ``sqlite3.Row`` or any mapping with the same keys).
RowLike = sqlite3.Row | Mapping[str, Any]

#: Columns of :meth:`Catalog.audit_frame`, in order.
AUDIT_COLUMNS = (
    "event_time",
    "recipient",
    "share",
    "schema",
    "table",
    "action",
    "version",
    "start_version",
    "end_version",
    "num_files",
    "has_predicate_hints",
    "has_limit_hint",
    "status_code",
    "user_agent",
    "client_address",
    "duration_ms",
    "response_format",
)


def _utcnow() -> datetime:
    return clock.utcnow()  # looked up at call time, so a test clock applies


@dataclass(frozen=True)
class TableInfo:
    """A provider table: three-part name → Delta table location."""

    name: str
    catalog: str
    schema: str
    table: str
    location: str
    registered_at: datetime

    @classmethod
    def from_row(cls, row: RowLike) -> TableInfo:
        return cls(
            name=row["name"],
            catalog=row["catalog"],
            schema=row["schema_name"],
            table=row["table_name"],
            location=row["location"],
            registered_at=clock.from_epoch(row["registered_at"]),
        )


@dataclass(frozen=True)
class Share:
    """A share: a named set of tables granted to recipients."""

    name: str
    comment: str | None
    created_at: datetime
    id: str

    @classmethod
    def from_row(cls, row: RowLike) -> Share:
        return cls(
            name=row["name"],
            comment=row["comment"],
            created_at=clock.from_epoch(row["created_at"]),
            id=row["id"],
        )


@dataclass(frozen=True)
class PartitionClause:
    """One clause of a partition filter: ``column = value`` or ``column = CURRENT_RECIPIENT().value``.

    :param column: a partition column of the shared table.
    :param value: the literal value, or the recipient property name when ``is_property``.
    :param is_property: True for ``CURRENT_RECIPIENT().<property>``.
    """

    column: str
    value: Any
    is_property: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "value": self.value, "is_property": self.is_property}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartitionClause:
        return cls(
            column=data["column"], value=data["value"], is_property=bool(data["is_property"])
        )

    def resolve(self, recipient: Recipient | None) -> Any:
        """The value this clause compares with for ``recipient`` (None when a property is missing)."""
        if not self.is_property:
            return self.value
        if recipient is None:
            return None
        props = {k.lower(): v for k, v in recipient.properties.items()}
        return props.get(str(self.value).lower())

    def __str__(self) -> str:
        if self.is_property:
            return f"{self.column} = CURRENT_RECIPIENT().{self.value}"
        value = self.value
        if isinstance(value, str):
            return f"{self.column} = '" + value.replace("'", "''") + "'"
        return f"{self.column} = {value!r}"


def filter_from_json(text: str | None) -> tuple[PartitionClause, ...]:
    return tuple(PartitionClause.from_json(d) for d in json.loads(text or "[]"))


@dataclass(frozen=True)
class ShareEntry:
    """An entry of a share, as added: a table (``kind='table'``) or a whole schema (``kind='schema'``).

    ``source`` is ``catalog.schema.table``, ``catalog.schema`` or ``delta.`/path```; ``alias`` is
    ``schema.table`` for a table entry and the schema name for a schema entry.
    """

    share: str
    kind: str
    source: str
    alias: str
    comment: str | None
    history: bool
    start_version: int | None
    partition_filter: tuple[PartitionClause, ...]
    added_at: datetime
    id: str = ""

    @classmethod
    def from_row(cls, row: RowLike) -> ShareEntry:
        return cls(
            share=row["share_name"],
            kind=row["kind"],
            source=row["source"],
            alias=row["alias"],
            comment=row["comment"],
            history=bool(row["history"]),
            start_version=row["start_version"],
            partition_filter=filter_from_json(row["partition_filter"]),
            added_at=clock.from_epoch(row["added_at"]),
            id=row["id"],
        )


@dataclass(frozen=True)
class SharedTable:
    """A table as a recipient sees it: ``share.schema.name``, with schema entries expanded."""

    share: str
    schema: str
    name: str
    location: str
    history: bool
    start_version: int | None
    partition_filter: tuple[PartitionClause, ...]
    id: str
    comment: str | None = None
    #: Where it comes from: ``catalog.schema.table`` or ``delta.`/path```.
    source: str = ""
    #: The share's uuid (the protocol's ``shareId``).
    share_id: str = ""
    #: The Delta version the share serves as this table's latest (history up to it); None: the newest.
    pinned_version: int | None = None


@dataclass(frozen=True)
class Recipient:
    """A data recipient; ``properties`` feed ``CURRENT_RECIPIENT().<prop>`` partition filters."""

    name: str
    comment: str | None
    properties: dict[str, str] = field(hash=False)
    created_at: datetime
    id: str

    @classmethod
    def from_row(cls, row: RowLike) -> Recipient:
        return cls(
            name=row["name"],
            comment=row["comment"],
            properties=dict(json.loads(row["properties"] or "{}")),
            created_at=clock.from_epoch(row["created_at"]),
            id=row["id"],
        )


@dataclass(frozen=True)
class TokenInfo:
    """What the catalog knows about a token: never the token itself, only its first characters."""

    id: str
    recipient: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: RowLike) -> TokenInfo:
        return cls(
            id=row["id"],
            recipient=row["recipient_name"],
            prefix=row["prefix"],
            created_at=clock.from_epoch(row["created_at"]),
            expires_at=clock.from_epoch(row["expires_at"]),
            revoked_at=clock.from_epoch(row["revoked_at"]),
        )

    def is_live(self, at: float | None = None) -> bool:
        """Not revoked and not expired at ``at`` (epoch seconds; default now)."""
        at = clock.now() if at is None else at
        return self.revoked_at is None and self.expires_at.timestamp() > at

    @property
    def status(self) -> str:
        """``'revoked'``, ``'expired'`` or ``'active'``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.is_live() else "expired"


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: the only place the clear token ever exists. Show it once."""

    token: str = field(repr=False)
    info: TokenInfo

    @property
    def expires_at(self) -> datetime:
        return self.info.expires_at


@dataclass(frozen=True)
class Grant:
    """``GRANT SELECT ON SHARE share TO RECIPIENT recipient``."""

    share: str
    recipient: str
    granted_at: datetime

    @classmethod
    def from_row(cls, row: RowLike) -> Grant:
        return cls(
            share=row["share_name"],
            recipient=row["recipient_name"],
            granted_at=clock.from_epoch(row["granted_at"]),
        )


@dataclass(frozen=True)
class AuditEvent:
    """One request seen by the sharing server (a row of ``system.access.audit``)."""

    action: str
    event_time: datetime = field(default_factory=_utcnow)
    recipient: str | None = None
    share: str | None = None
    schema: str | None = None
    table: str | None = None
    version: int | None = None
    start_version: int | None = None
    end_version: int | None = None
    num_files: int | None = None
    has_predicate_hints: bool = False
    has_limit_hint: bool = False
    status_code: int | None = None
    user_agent: str | None = None
    client_address: str | None = None
    duration_ms: float | None = None
    response_format: str | None = None

    @classmethod
    def from_row(cls, row: RowLike) -> AuditEvent:
        return cls(
            action=row["action"],
            event_time=clock.from_epoch(row["event_time"]),
            recipient=row["recipient"],
            share=row["share"],
            schema=row["schema_name"],
            table=row["table_name"],
            version=row["version"],
            start_version=row["start_version"],
            end_version=row["end_version"],
            num_files=row["num_files"],
            has_predicate_hints=bool(row["has_predicate_hints"]),
            has_limit_hint=bool(row["has_limit_hint"]),
            status_code=row["status_code"],
            user_agent=row["user_agent"],
            client_address=row["client_address"],
            duration_ms=row["duration_ms"],
            response_format=row["response_format"],
        )
