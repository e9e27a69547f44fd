"""The statements of the provider SQL, as frozen dataclasses (what :func:`helpers.sql.parse` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Statement:
    """Base of all parsed statements; ``text`` is the statement's source, ``pos`` its offset in the script."""


@dataclass(frozen=True)
class PartitionValue:
    """One ``col = value`` item of a share's ``PARTITION (...)`` clause.

    :param column: partition column.
    :param value: the literal as text, or the recipient property name when ``is_property``.
    :param is_property: ``col = CURRENT_RECIPIENT().prop``: the value comes from the recipient's properties.
    """

    column: str
    value: Any
    is_property: bool = False


@dataclass(frozen=True)
class CreateShare(Statement):
    name: str
    comment: str | None = None
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropShare(Statement):
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class AlterShareAddTable(Statement):
    share: str
    source: str
    alias: str | None = None
    comment: str | None = None
    partition: tuple[PartitionValue, ...] = ()
    history: bool = False
    start_version: int | None = None


@dataclass(frozen=True)
class AlterShareAddSchema(Statement):
    share: str
    source: str
    history: bool = False


@dataclass(frozen=True)
class AlterShareRemoveTable(Statement):
    share: str
    alias: str


@dataclass(frozen=True)
class AlterShareRemoveSchema(Statement):
    share: str
    schema: str


@dataclass(frozen=True)
class ShowShares(Statement):
    pass


@dataclass(frozen=True)
class ShowAllInShare(Statement):
    share: str


@dataclass(frozen=True)
class DescribeShare(Statement):
    name: str


@dataclass(frozen=True)
class CommentOn(Statement):
    """``COMMENT ON SHARE|RECIPIENT name IS 'text' | NULL``."""

    kind: str
    name: str
    comment: str | None


@dataclass(frozen=True)
class CreateRecipient(Statement):
    name: str
    comment: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    if_not_exists: bool = False


@dataclass(frozen=True)
class AlterRecipientSetProperties(Statement):
    name: str
    properties: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AlterRecipientRotateToken(Statement):
    name: str
    expire_existing_in_seconds: int = 0


@dataclass(frozen=True)
class AlterRecipientRevokeTokens(Statement):
    name: str


@dataclass(frozen=True)
class DropRecipient(Statement):
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class ShowRecipients(Statement):
    pass


@dataclass(frozen=True)
class DescribeRecipient(Statement):
    name: str


@dataclass(frozen=True)
class GrantOnShare(Statement):
    share: str
    recipient: str


@dataclass(frozen=True)
class RevokeOnShare(Statement):
    share: str
    recipient: str


@dataclass(frozen=True)
class ShowGrantsOnShare(Statement):
    share: str


@dataclass(frozen=True)
class ShowGrantsToRecipient(Statement):
    recipient: str


@dataclass(frozen=True)
class CreateTable(Statement):
    """``CREATE TABLE c.s.t LOCATION '/path'``: register an existing Delta table."""

    name: str
    location: str
    if_not_exists: bool = False
    replace: bool = False


@dataclass(frozen=True)
class Use(Statement):
    """``USE CATALOG c`` / ``USE SCHEMA [c.]s`` / ``USE [c.]s``: defaults for shorter table names."""

    catalog: str | None = None
    schema: str | None = None


@dataclass(frozen=True)
class ShowTables(Statement):
    catalog: str | None = None
    schema: str | None = None


@dataclass(frozen=True)
class DescribeTable(Statement):
    name: str


@dataclass(frozen=True)
class DescribeHistory(Statement):
    name: str
    limit: int | None = None


@dataclass(frozen=True)
class SetTblProperties(Statement):
    name: str
    properties: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ShowTblProperties(Statement):
    name: str


@dataclass(frozen=True)
class DataStatement(Statement):
    """A ``SELECT`` / ``INSERT`` / ``UPDATE`` / ``DELETE`` / ``MERGE`` parsed by sqlglot.

    :param kind: ``query``, ``insert``, ``update``, ``delete`` or ``merge``.
    :param text: the statement's source text.
    :param expression: the sqlglot tree (not compared).
    """

    kind: str
    text: str
    expression: Any = field(compare=False, repr=False, default=None)


# The statement forms, re-exported by helpers.sql as one list.
__all__ = [
    "AlterRecipientRevokeTokens",
    "AlterRecipientRotateToken",
    "AlterRecipientSetProperties",
    "AlterShareAddSchema",
    "AlterShareAddTable",
    "AlterShareRemoveSchema",
    "AlterShareRemoveTable",
    "CommentOn",
    "CreateRecipient",
    "CreateShare",
    "CreateTable",
    "DataStatement",
    "DescribeHistory",
    "DescribeRecipient",
    "DescribeShare",
    "DescribeTable",
    "DropRecipient",
    "DropShare",
    "GrantOnShare",
    "PartitionValue",
    "RevokeOnShare",
    "SetTblProperties",
    "ShowAllInShare",
    "ShowGrantsOnShare",
    "ShowGrantsToRecipient",
    "ShowRecipients",
    "ShowShares",
    "ShowTables",
    "ShowTblProperties",
    "Statement",
    "Use",
]
