"""Shared views and IP access lists in the provider SQL: their statements and how they parse.

The grammar (``[]`` optional, ``{}`` any order)::

    CREATE [OR REPLACE] VIEW [IF NOT EXISTS] catalog.schema.view [COMMENT 'text'] AS SELECT ...
    DROP VIEW [IF EXISTS] catalog.schema.view
    SHOW VIEWS [IN catalog[.schema]]
    DESCRIBE VIEW catalog.schema.view
    ALTER SHARE share ADD VIEW catalog.schema.view {AS schema.name | COMMENT 'text'}
    ALTER SHARE share REMOVE VIEW schema.name
    ALTER RECIPIENT recipient SET IP ACCESS LIST ('192.0.2.0/24', '198.51.100.7', ...)
    ALTER RECIPIENT recipient UNSET IP ACCESS LIST

A view's query is DuckDB-compatible Databricks SQL over provider tables; ``current_recipient('prop')`` in it
is the reading recipient's property ``prop`` (NULL when the recipient has none), so one view serves each
recipient its own rows (row filters) and its own column values (column masks).

:func:`parse_view_statement` is called by the parser (:mod:`helpers.sql.parser`) before its own statements:
it looks ahead without consuming anything and returns None when the statement is not one of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helpers.sql.cursor import TokenCursor
from helpers.sql.dialect import sqlglot_dialect
from helpers.sql.lexer import IDENT, QUOTED, STRING, SYMBOL, syntax_error
from helpers.sql.statements import Statement

__all__ = [
    "AlterRecipientSetIpAccessList",
    "AlterRecipientUnsetIpAccessList",
    "AlterShareAddView",
    "AlterShareRemoveView",
    "CreateView",
    "DescribeView",
    "DropView",
    "ShowViews",
    "parse_view_statement",
]


@dataclass(frozen=True)
class CreateView(Statement):
    """``CREATE [OR REPLACE] VIEW [IF NOT EXISTS] c.s.v [COMMENT 'text'] AS <query>``."""

    name: str
    query: str
    comment: str | None = None
    replace: bool = False
    if_not_exists: bool = False
    expression: Any = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class DropView(Statement):
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class ShowViews(Statement):
    catalog: str | None = None
    schema: str | None = None


@dataclass(frozen=True)
class DescribeView(Statement):
    name: str


@dataclass(frozen=True)
class AlterShareAddView(Statement):
    share: str
    source: str
    alias: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class AlterShareRemoveView(Statement):
    share: str
    alias: str


@dataclass(frozen=True)
class AlterRecipientSetIpAccessList(Statement):
    name: str
    entries: tuple[str, ...]


@dataclass(frozen=True)
class AlterRecipientUnsetIpAccessList(Statement):
    name: str


def _is_name(cur: TokenCursor, k: int) -> bool:
    return cur.peek(k).kind in (IDENT, QUOTED)


def parse_view_statement(cur: TokenCursor) -> Statement | None:
    """The view / IP-list statement starting at the cursor, or None (nothing consumed) for any other."""
    first = cur.peek()
    if first.kind != IDENT:
        return None
    word = first.value.upper()
    if word == "CREATE":
        k = 3 if cur.peek(1).is_kw("OR") and cur.peek(2).is_kw("REPLACE") else 1
        if cur.peek(k).is_kw("VIEW"):
            cur.advance()
            replace = cur.accept_kw("OR", "REPLACE")
            cur.expect_kw("VIEW")
            return _create_view(cur, replace)
    elif word == "DROP" and cur.peek(1).is_kw("VIEW"):
        cur.advance()
        cur.advance()
        if_exists = cur.accept_kw("IF", "EXISTS")
        return DropView(_view_name(cur), if_exists)
    elif word == "SHOW" and cur.peek(1).is_kw("VIEWS"):
        cur.advance()
        cur.advance()
        if cur.at_kw("IN", "FROM"):
            cur.advance()
            parts = cur.name("a catalog or catalog.schema", (1, 2))
            return ShowViews(parts[0], parts[1] if len(parts) > 1 else None)
        return ShowViews()
    elif word in ("DESCRIBE", "DESC") and cur.peek(1).is_kw("VIEW") and _is_name(cur, 2):
        cur.advance()
        cur.advance()
        return DescribeView(_view_name(cur))
    elif word == "ALTER" and _is_name(cur, 2):
        if (
            cur.peek(1).is_kw("SHARE")
            and cur.peek(3).is_kw("ADD", "REMOVE")
            and cur.peek(4).is_kw("VIEW")
        ):
            cur.advance()
            cur.advance()
            return _alter_share_view(cur)
        if (
            cur.peek(1).is_kw("RECIPIENT")
            and cur.peek(3).is_kw("SET", "UNSET")
            and cur.peek(4).is_kw("IP")
        ):
            cur.advance()
            cur.advance()
            return _alter_recipient_ip(cur)
    return None


def _view_name(cur: TokenCursor) -> str:
    return ".".join(cur.name("a three-part view name catalog.schema.view", 3))


def _create_view(cur: TokenCursor, replace: bool) -> CreateView:
    if_not_exists = cur.accept_kw("IF", "NOT", "EXISTS")
    if replace and if_not_exists:
        raise cur.error("the view name (OR REPLACE and IF NOT EXISTS exclude each other)")
    name = _view_name(cur)
    comment: str | None = None
    if cur.accept_kw("COMMENT"):
        comment = cur.string("the comment string")
    if not cur.at_kw("AS"):
        raise cur.error("COMMENT or AS followed by the view's query (AS SELECT ...)")
    cur.advance()
    start = cur.peek()
    if not (start.is_kw("SELECT", "WITH", "FROM", "VALUES") or cur.at_symbol("(")):
        raise cur.error("the view's query (SELECT ... or WITH ...)")
    last = cur.tokens[-2]
    text = cur.text[start.pos : last.end]
    tree = _parse_query(cur, text, start.pos)
    cur.i = len(cur.tokens) - 1
    return CreateView(name, text, comment, replace, if_not_exists, tree)


def _parse_query(cur: TokenCursor, text: str, pos: int) -> Any:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        trees = [t for t in sqlglot.parse(text, read=sqlglot_dialect()) if t is not None]
    except (ParseError, TokenError) as exc:
        detail = str(exc).split("\n")[0].split(" but got ")[0].split(". Line ")[0]
        raise syntax_error(
            cur.lines, pos, "a valid SELECT query", f"a query sqlglot rejects ({detail})"
        ) from None
    if len(trees) != 1 or not isinstance(trees[0], exp.Query):
        raise syntax_error(cur.lines, pos, "one SELECT query after AS", f"'{text[:40]}'")
    return trees[0]


def _alter_share_view(cur: TokenCursor) -> Statement:
    share = cur.name("a share name")[0]
    action = cur.expect_one_of("ADD", "REMOVE")
    cur.expect_kw("VIEW")
    if action == "REMOVE":
        return AlterShareRemoveView(
            share, ".".join(cur.name("the shared view name schema.name", 2))
        )
    source = _view_name(cur)
    alias: str | None = None
    comment: str | None = None
    seen: set[str] = set()
    while cur.at_kw("AS", "COMMENT"):
        tok = cur.advance()
        clause = tok.value.upper()
        if clause in seen:
            raise syntax_error(
                cur.lines, tok.pos, f"the {clause} clause at most once", f"'{tok.value}' again"
            )
        seen.add(clause)
        if clause == "AS":
            alias = ".".join(cur.name("the shared name schema.name", 2))
        else:
            comment = cur.string("the comment string")
    remaining = [c for c in ("AS schema.name", "COMMENT") if c.split()[0] not in seen]
    cur.expect_end(
        ", ".join(remaining) + " or end of statement" if remaining else "end of statement"
    )
    return AlterShareAddView(share, source, alias, comment)


def _alter_recipient_ip(cur: TokenCursor) -> Statement:
    name = cur.name("a recipient name")[0]
    action = cur.expect_one_of("SET", "UNSET")
    cur.expect_kw("IP", "ACCESS", "LIST")
    if action == "UNSET":
        return AlterRecipientUnsetIpAccessList(name)
    cur.expect_symbol("(", "'(' and the allowed addresses, as in ('192.0.2.0/24', '198.51.100.7')")
    entries: list[str] = []
    while True:
        tok = cur.peek()
        if tok.kind != STRING:
            raise cur.error("an IP address or CIDR range as a string, such as '192.0.2.0/24'")
        cur.advance()
        entries.append(tok.value)
        if cur.accept_symbol(")"):
            break
        if not (cur.peek().kind == SYMBOL and cur.peek().value == ","):
            raise cur.error("',' or ')' in the IP access list")
        cur.advance()
    return AlterRecipientSetIpAccessList(name, tuple(entries))
