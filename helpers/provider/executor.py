"""The SQL executor: each parsed statement (:mod:`helpers.sql`) runs as one Provider method.

Scripts are parsed completely before anything runs (a syntax error anywhere means nothing ran); then
statements run in order and the first failure stops the script, like Databricks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from helpers.exceptions import SharelabError, SqlParseError
from helpers.provider.control import ControlPlane
from helpers.provider.ddl import DDL_HANDLERS
from helpers.provider.frames import status_frame
from helpers.provider.maintenance import MAINTENANCE_HANDLERS, Maintenance
from helpers.provider.recipients import Recipients
from helpers.provider.views import VIEW_HANDLERS, ViewStatements
from helpers.sql import (
    AlterRecipientRevokeTokens,
    AlterRecipientRotateToken,
    AlterRecipientSetProperties,
    AlterShareAddSchema,
    AlterShareAddTable,
    AlterShareRemoveSchema,
    AlterShareRemoveTable,
    CommentOn,
    CreateRecipient,
    CreateShare,
    CreateTable,
    DataStatement,
    DescribeHistory,
    DescribeRecipient,
    DescribeShare,
    DescribeTable,
    DropRecipient,
    DropShare,
    GrantOnShare,
    RevokeOnShare,
    SetTblProperties,
    ShowAllInShare,
    ShowGrantsOnShare,
    ShowGrantsToRecipient,
    ShowRecipients,
    ShowShares,
    ShowTables,
    ShowTblProperties,
    Statement,
    Use,
    parse,
)


class StatementRunner(ControlPlane, Recipients, Maintenance, ViewStatements):
    """Every method a statement maps to, and the SQL entry points :meth:`sql` / :meth:`sql_all`."""

    def sql(self, text: str) -> pd.DataFrame:
        """Run one or more ``;``-separated statements; return the last statement's result.

        :raises SqlParseError: nothing ran. :raises SharelabError: see :func:`run_script`.
        """
        results = self.sql_all(text)
        return results[-1] if results else status_frame("no statement to run")

    def sql_all(self, text: str) -> list[pd.DataFrame]:
        """Run one or more ``;``-separated statements; return every statement's result, in order."""
        return run_script(self, text)

    def run_data_statement(self, statement: DataStatement) -> pd.DataFrame:
        """Run a parsed ``SELECT`` / ``INSERT`` / ``UPDATE`` / ``DELETE`` / ``MERGE``."""
        tree = statement.expression
        if statement.kind == "query":
            return self._query_frame(tree)
        if statement.kind == "insert":
            return self._sql_insert(tree)
        if statement.kind == "update":
            return self._sql_update(tree)
        if statement.kind == "delete":
            return self._sql_delete(tree)
        return self._sql_merge(tree)


_Handler = Callable[[StatementRunner, Any], pd.DataFrame]

_HANDLERS: dict[type[Statement], _Handler] = {
    CreateShare: lambda p, s: p.create_share(s.name, s.comment, if_not_exists=s.if_not_exists),
    DropShare: lambda p, s: p.drop_share(s.name, if_exists=s.if_exists),
    AlterShareAddTable: lambda p, s: p.add_table(
        s.share,
        s.source,
        alias=s.alias,
        comment=s.comment,
        partition=s.partition,
        history=s.history,
        start_version=s.start_version,
    ),
    AlterShareAddSchema: lambda p, s: p.add_schema(s.share, s.source, history=s.history),
    AlterShareRemoveTable: lambda p, s: p.remove_table(s.share, s.alias),
    AlterShareRemoveSchema: lambda p, s: p.remove_schema(s.share, s.schema),
    ShowShares: lambda p, s: p.show_shares(),
    ShowAllInShare: lambda p, s: p.show_all_in_share(s.share),
    DescribeShare: lambda p, s: p.describe_share(s.name),
    CreateRecipient: lambda p, s: p.create_recipient(
        s.name, s.comment, dict(s.properties) or None, if_not_exists=s.if_not_exists
    ),
    AlterRecipientSetProperties: lambda p, s: p.alter_recipient(s.name, dict(s.properties)),
    AlterRecipientRotateToken: lambda p, s: p.rotate_token(
        s.name, expire_existing_in_seconds=s.expire_existing_in_seconds
    ),
    AlterRecipientRevokeTokens: lambda p, s: p.revoke_tokens(s.name),
    DropRecipient: lambda p, s: p.drop_recipient(s.name, if_exists=s.if_exists),
    CommentOn: lambda p, s: p.set_comment(s.kind, s.name, s.comment),
    ShowRecipients: lambda p, s: p.show_recipients(),
    DescribeRecipient: lambda p, s: p.describe_recipient(s.name),
    GrantOnShare: lambda p, s: p.grant(s.share, s.recipient),
    RevokeOnShare: lambda p, s: p.revoke(s.share, s.recipient),
    ShowGrantsOnShare: lambda p, s: p.show_grants_on_share(s.share),
    ShowGrantsToRecipient: lambda p, s: p.show_grants_to_recipient(s.recipient),
    CreateTable: lambda p, s: p.register_table(
        s.name, s.location, replace=s.replace, if_not_exists=s.if_not_exists
    ),
    ShowTables: lambda p, s: p.show_tables(s.catalog, s.schema),
    Use: lambda p, s: p.use(s.catalog, s.schema),
    DescribeTable: lambda p, s: p.describe_table(s.name),
    DescribeHistory: lambda p, s: p.history(s.name, limit=s.limit),
    SetTblProperties: lambda p, s: p.set_tblproperties(s.name, dict(s.properties)),
    ShowTblProperties: lambda p, s: p.show_tblproperties(s.name),
    DataStatement: lambda p, s: p.run_data_statement(s),
}
_HANDLERS.update(VIEW_HANDLERS)  # views and IP access lists (helpers.provider.views)
_HANDLERS.update(DDL_HANDLERS)  # catalogs, schemas, managed tables (helpers.provider.ddl)
_HANDLERS.update(MAINTENANCE_HANDLERS)  # TRUNCATE, OPTIMIZE, VACUUM, RESTORE, SET


def execute(provider: StatementRunner, statement: Statement) -> pd.DataFrame:
    """Run one parsed statement against ``provider`` and return its result."""
    handler = _HANDLERS.get(type(statement))
    if handler is None:  # pragma: no cover - every statement class has a handler
        raise SharelabError(f"no executor for {type(statement).__name__}")
    return handler(provider, statement)


def iter_script(provider: StatementRunner, text: str) -> Iterator[tuple[str, pd.DataFrame]]:
    """Parse ``text`` completely, then run its statements in order, yielding ``(statement text, result)``.

    Stops at the first failure. Like Databricks, statements that ran before it stay applied; the error
    says which statement failed and what was applied.

    :raises SqlParseError: before anything runs, when any statement does not parse.
    :raises SharelabError: the first failing statement's error, its message prefixed with its number.
    """
    script = parse(text)
    total = len(script.statements)
    for number, (statement, source) in enumerate(
        zip(script.statements, script.texts, strict=True), start=1
    ):
        try:
            result = execute(provider, statement)
        except SharelabError as exc:
            if total == 1:
                raise
            applied = (
                "no earlier statement was applied"
                if number == 1
                else f"statement{'s' if number > 2 else ''} "
                f"{'1' if number == 2 else f'1-{number - 1}'} stayed applied"
            )
            message = f"statement {number} of {total} failed ({applied}): {exc}"
            raise _rewrap(exc, message) from exc
        yield source, result


def run_script(provider: StatementRunner, text: str) -> list[pd.DataFrame]:
    """Run a script (see :func:`iter_script`) and return every statement's result."""
    return [frame for _, frame in iter_script(provider, text)]


def _rewrap(exc: SharelabError, message: str) -> SharelabError:
    """The same exception class with a new message (keeps SqlParseError's position fields)."""
    try:
        if isinstance(exc, SqlParseError):
            return SqlParseError(
                message,
                position=exc.position,
                line=exc.line,
                column=exc.column,
                expected=exc.expected,
            )
        return type(exc)(message)
    except Exception:  # an exception class with another constructor: fall back to the base class
        return SharelabError(message)
