"""The recipient's SQL as a small pure language: its own statements, and the shared-table references of a query.

A recipient's session (:mod:`~helpers.recipient.shared_catalog`) understands the Databricks recipient
statements itself (``SHOW PROVIDERS``, ``DESCRIBE PROVIDER p``, ``SHOW SHARES IN PROVIDER p``, ``CREATE
CATALOG x USING SHARE p.share``, ``SHOW CATALOGS``, ``DESCRIBE CATALOG x``, ``SHOW SCHEMAS IN x``, ``SHOW
TABLES IN x.schema``, ``DESCRIBE TABLE x.schema.table``, ``DROP CATALOG x``) and hands everything else to
DuckDB once the references to shared tables (``x.schema.table [VERSION AS OF n]``) are replaced by the Arrow
tables read through the protocol. This module only parses: nothing here runs or reads.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from helpers.exceptions import ReadOnlyShareError, SqlParseError

__all__ = [
    "RecipientStatement",
    "SharedRef",
    "Token",
    "parse_describe_table",
    "parse_recipient_statement",
    "find_shared_refs",
    "split_statements",
    "tokenize",
]

_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<comment>--[^\n]*|/\*.*?\*/)|(?P<string>'(?:[^']|'')*')"
    r'|(?P<qident>"(?:[^"]|"")*"|`(?:[^`]|``)*`)|(?P<number>\d+(?:\.\d*)?)'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)|(?P<punct>.)",
    re.DOTALL,
)
# Statements whose target is the first table name after these words: on a shared table they are writes.
_WRITE_VERBS = {
    "INSERT",
    "UPDATE",
    "DELETE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "MERGE",
    "CREATE",
    "COMMENT",
}
_TARGET_WORDS = _WRITE_VERBS | {
    "INTO",
    "FROM",
    "TABLE",
    "VIEW",
    "IF",
    "EXISTS",
    "NOT",
    "OR",
    "REPLACE",
    "TEMP",
    "TEMPORARY",
    "ON",
}


@dataclass(frozen=True)
class Token:
    kind: str  # ws, comment, string, qident, number, word, punct
    text: str
    start: int

    @property
    def value(self) -> str:
        """An identifier's name (quotes removed), a word's text."""
        if self.kind == "qident":
            q = self.text[0]
            return self.text[1:-1].replace(q + q, q)
        return self.text

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def _error(text: str, pos: int, message: str) -> SqlParseError:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return SqlParseError(
        f"Syntax error at line {line}, column {column}: {message}",
        position=pos,
        line=line,
        column=column,
        expected=message,
    )


def tokenize(text: str) -> list[Token]:
    """Every token of ``text``, whitespace and comments included (so the text can be rebuilt)."""
    tokens = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "punct"
        if kind == "punct" and m.group() in "'\"`":
            raise _error(text, m.start(), f"unterminated quote {m.group()}: close it")
        if kind == "punct" and text.startswith("/*", m.start()):
            raise _error(text, m.start(), "unterminated comment /*: close it with */")
        tokens.append(Token(kind, m.group(), m.start()))
    return tokens


def _significant(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.kind not in ("ws", "comment")]


def split_statements(text: str) -> list[str]:
    """``text`` cut at its top-level semicolons (not those inside strings or comments); empty parts dropped."""
    parts, start = [], 0
    for t in tokenize(text):
        if t.kind == "punct" and t.text == ";":
            parts.append(text[start : t.start])
            start = t.end
    parts.append(text[start:])
    return [p.strip() for p in parts if _significant(tokenize(p))]


@dataclass(frozen=True)
class RecipientStatement:
    """One of the recipient's own statements. ``kind`` names it; the other fields are its arguments."""

    kind: str  # show_providers, describe_provider, show_shares, create_catalog, drop_catalog,
    # describe_catalog, show_catalogs, show_schemas, show_tables, describe_table
    name: str = ""  # the provider, catalog or table name
    provider: str = ""
    share: str = ""
    schema: str = ""
    table: str = ""
    if_exists: bool = False  # IF NOT EXISTS / IF EXISTS
    comment: str = ""


_EXAMPLES = {
    "provider": "DESCRIBE PROVIDER airline",
    "shares": "SHOW SHARES IN PROVIDER airline",
    "create": "CREATE CATALOG sales USING SHARE airline.sales_data_share",
    "drop": "DROP CATALOG sales",
    "catalog": "DESCRIBE CATALOG sales",
    "schemas": "SHOW SCHEMAS IN sales",
    "tables": "SHOW TABLES IN sales.sales_domain",
    "table": "DESCRIBE TABLE sales.sales_domain.bookings",
}


class _Cursor:
    def __init__(self, text: str, tokens: list[Token], example: str) -> None:
        self.text, self.tokens, self.i, self.example = text, tokens, 0, example

    def peek(self, *words: str) -> bool:
        ahead = self.tokens[self.i : self.i + len(words)]
        return len(ahead) == len(words) and all(
            t.upper == w for t, w in zip(ahead, words, strict=True)
        )

    def accept(self, *words: str) -> bool:
        if self.peek(*words):
            self.i += len(words)
            return True
        return False

    def fail(self, what: str) -> SqlParseError:
        found = (
            self.tokens[self.i].text if self.i < len(self.tokens) else "the end of the statement"
        )
        pos = self.tokens[self.i].start if self.i < len(self.tokens) else len(self.text)
        return _error(
            self.text, pos, f"expected {what}, found {found!r}; write e.g. {self.example}"
        )

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise self.fail(" ".join(words))

    def name(self, parts: int, what: str) -> list[str]:
        out = []
        for n in range(parts):
            if n:
                if not (self.i < len(self.tokens) and self.tokens[self.i].text == "."):
                    raise self.fail(f"{what} ({parts} dotted parts)")
                self.i += 1
            t = self.tokens[self.i] if self.i < len(self.tokens) else None
            if t is None or t.kind not in ("word", "qident"):
                raise self.fail(what)
            out.append(t.value)
            self.i += 1
        return out

    def string(self, what: str) -> str:
        t = self.tokens[self.i] if self.i < len(self.tokens) else None
        if t is None or t.kind != "string":
            raise self.fail(what)
        self.i += 1
        return t.text[1:-1].replace("''", "'")

    def done(self) -> None:
        if self.i < len(self.tokens):
            raise self.fail("the end of the statement")


def parse_recipient_statement(text: str) -> RecipientStatement | None:
    """The recipient statement ``text`` is, or None when it is a query (or anything else) for DuckDB.

    :raises SqlParseError: a recipient statement that is malformed (the message shows what to write).
    """
    sig = _significant(tokenize(text))
    head = [t.upper for t in sig[:4]]
    if head[:2] == ["SHOW", "PROVIDERS"]:
        c = _Cursor(text, sig, "SHOW PROVIDERS")
        c.i = 2
        c.done()
        return RecipientStatement("show_providers")
    if head[:2] in (["DESCRIBE", "PROVIDER"], ["DESC", "PROVIDER"]):
        c = _Cursor(text, sig, _EXAMPLES["provider"])
        c.i = 2
        (name,) = c.name(1, "a provider name")
        c.done()
        return RecipientStatement("describe_provider", name=name)
    if head[:2] == ["SHOW", "SHARES"]:
        c = _Cursor(text, sig, _EXAMPLES["shares"])
        c.i = 2
        c.expect("IN", "PROVIDER")
        (name,) = c.name(1, "a provider name")
        c.done()
        return RecipientStatement("show_shares", name=name)
    if head[:2] == ["CREATE", "CATALOG"]:
        return _create_catalog(text, sig)
    if head[:2] == ["DROP", "CATALOG"]:
        c = _Cursor(text, sig, _EXAMPLES["drop"])
        c.i = 2
        if_exists = c.accept("IF", "EXISTS")
        (name,) = c.name(1, "a catalog name")
        c.accept("CASCADE")
        c.done()
        return RecipientStatement("drop_catalog", name=name, if_exists=if_exists)
    if head[:2] == ["SHOW", "CATALOGS"]:
        c = _Cursor(text, sig, "SHOW CATALOGS")
        c.i = 2
        c.done()
        return RecipientStatement("show_catalogs")
    if head[:2] in (["DESCRIBE", "CATALOG"], ["DESC", "CATALOG"]):
        c = _Cursor(text, sig, _EXAMPLES["catalog"])
        c.i = 2
        (name,) = c.name(1, "a catalog name")
        c.done()
        return RecipientStatement("describe_catalog", name=name)
    if head[:3] in (["SHOW", "SCHEMAS", "IN"], ["SHOW", "SCHEMAS", "FROM"]):
        c = _Cursor(text, sig, _EXAMPLES["schemas"])
        c.i = 3
        (name,) = c.name(1, "a catalog name")
        c.done()
        return RecipientStatement("show_schemas", name=name)
    if head[:3] in (["SHOW", "TABLES", "IN"], ["SHOW", "TABLES", "FROM"]):
        c = _Cursor(text, sig, _EXAMPLES["tables"])
        c.i = 3
        catalog, schema = c.name(2, "catalog.schema")
        c.done()
        return RecipientStatement("show_tables", name=catalog, schema=schema)
    return None


def _create_catalog(text: str, sig: list[Token]) -> RecipientStatement:
    c = _Cursor(text, sig, _EXAMPLES["create"])
    c.i = 2
    if_not_exists = c.accept("IF", "NOT", "EXISTS")
    (name,) = c.name(1, "a catalog name")
    c.expect("USING", "SHARE")
    provider, share = c.name(2, "<provider>.<share> after USING SHARE")
    comment = c.string("a quoted comment after COMMENT") if c.accept("COMMENT") else ""
    c.done()
    return RecipientStatement(
        "create_catalog",
        name=name,
        provider=provider,
        share=share,
        if_exists=if_not_exists,
        comment=comment,
    )


def parse_describe_table(text: str, catalogs: Collection[str]) -> RecipientStatement | None:
    """``DESCRIBE [TABLE] x.schema.table`` on a shared catalog ``x`` (None for any other DESCRIBE)."""
    sig = _significant(tokenize(text))
    if not sig or sig[0].upper not in ("DESCRIBE", "DESC"):
        return None
    c = _Cursor(text, sig, _EXAMPLES["table"])
    c.i = 1
    c.accept("TABLE")
    if c.i >= len(sig) or sig[c.i].value.lower() not in {n.lower() for n in catalogs}:
        return None
    catalog, schema, table = c.name(3, "catalog.schema.table")
    c.done()
    return RecipientStatement("describe_table", name=catalog, schema=schema, table=table)


@dataclass(frozen=True)
class SharedRef:
    """A reference to a shared table in a query: ``catalog.schema.table [VERSION AS OF n]``."""

    catalog: str
    schema: str
    table: str
    version: int | None
    start: int  # the span of text it replaces
    end: int


def find_shared_refs(text: str, catalogs: Collection[str]) -> list[SharedRef]:
    """Every ``catalog.schema.table [VERSION AS OF n]`` of ``text`` whose catalog is one of ``catalogs``.

    :raises ReadOnlyShareError: when the statement writes to a shared table (INSERT, UPDATE, DELETE,
        DROP, ALTER, TRUNCATE, MERGE, CREATE ... on it).
    :raises SqlParseError: ``TIMESTAMP AS OF`` or a ``VERSION AS OF`` without a number.
    """
    known = {n.lower() for n in catalogs}
    sig = _significant(tokenize(text))
    refs: list[SharedRef] = []
    i = 0
    while i < len(sig):
        t = sig[i]
        name_at = (
            t.kind in ("word", "qident")
            and t.value.lower() in known
            and (i == 0 or sig[i - 1].text != ".")
            and [x.text for x in sig[i + 1 : i + 4 : 2]] == [".", "."]
            and all(x.kind in ("word", "qident") for x in sig[i + 2 : i + 5 : 2])
            and len(sig) >= i + 5
        )
        if not name_at:
            i += 1
            continue
        catalog, schema, table = t.value, sig[i + 2].value, sig[i + 4].value
        end, version, j = sig[i + 4].end, None, i + 5
        if [x.upper for x in sig[j : j + 3]] in (
            ["VERSION", "AS", "OF"],
            ["TIMESTAMP", "AS", "OF"],
        ):
            if sig[j].upper == "TIMESTAMP":
                raise _error(
                    text,
                    sig[j].start,
                    "TIMESTAMP AS OF is not supported on a shared table here; write VERSION AS OF n",
                )
            n = sig[j + 3] if j + 3 < len(sig) else None
            if n is None or n.kind != "number" or not n.text.isdigit():
                raise _error(
                    text, sig[j].start, "VERSION AS OF needs a version number, e.g. VERSION AS OF 2"
                )
            version, end, j = int(n.text), n.end, j + 4
        if (
            i > 0
            and sig[0].upper in _WRITE_VERBS
            and all(x.upper in _TARGET_WORDS for x in sig[:i])
        ):
            raise ReadOnlyShareError(
                f"{catalog}.{schema}.{table} is a shared table, read-only: the provider owns it. "
                f"To change a copy, make one of your own: CREATE TABLE my_{table} AS SELECT * FROM "
                f"{catalog}.{schema}.{table}"
            )
        refs.append(SharedRef(catalog, schema, table, version, t.start, end))
        i = j
    return refs
