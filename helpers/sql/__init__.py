"""The provider's SQL, Databricks dialect: tokenizer, parser, statements, executor and ``sharelab sql``.

Control-plane statements (shares, recipients, grants, table registration, history, properties) are parsed by
a small hand-written recursive-descent parser that knows where every token is, so a syntax error names the
line, the column and what was expected. Data statements (``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``,
``MERGE``) are handed to sqlglot (Databricks dialect, with ``''`` as the quote escape like the rest of this
parser); :class:`helpers.provider.Provider` resolves their table names against the catalog and runs them
through DuckDB (reads) and deltalake (writes).

Lexical rules: keywords and names are case-insensitive; ``--`` comments run to the end of the line and
``/* ... */`` comments may span lines; string literals use single or double quotes, a doubled quote
stands for itself (``'it''s'``) and backslashes are kept as they are (Windows paths work); names with
unusual characters go in backticks (```my share```, a doubled backtick stands for itself). Several
statements are separated by ``;``.

The grammar (``[]`` optional, ``|`` alternatives, ``{}`` any order)::

    CREATE SHARE [IF NOT EXISTS] share [COMMENT 'text']
    DROP SHARE [IF EXISTS] share
    ALTER SHARE share ADD [TABLE] <catalog.schema.table | delta.`/path`>
        {COMMENT 'text' | PARTITION (col = literal | col = CURRENT_RECIPIENT().prop, ...)
         | AS schema.table | WITH HISTORY | WITHOUT HISTORY}
    ALTER SHARE share ADD SCHEMA catalog.schema [WITH HISTORY | WITHOUT HISTORY]
    ALTER SHARE share REMOVE TABLE schema.table | ALTER SHARE share REMOVE SCHEMA schema
    SHOW SHARES | SHOW ALL IN SHARE share | DESCRIBE SHARE share
    COMMENT ON { SHARE share | RECIPIENT recipient } IS { 'text' | NULL }
    CREATE RECIPIENT [IF NOT EXISTS] recipient {COMMENT 'text' | PROPERTIES ('key' = 'value', ...)}
    ALTER RECIPIENT recipient SET PROPERTIES ('key' = 'value', ...)
    ALTER RECIPIENT recipient ROTATE TOKEN [EXPIRE EXISTING [TOKEN] IN n SECONDS]
    ALTER RECIPIENT recipient REVOKE TOKENS
    DROP RECIPIENT [IF EXISTS] recipient
    SHOW RECIPIENTS | DESCRIBE RECIPIENT recipient
    GRANT SELECT ON SHARE share TO RECIPIENT recipient
    REVOKE SELECT ON SHARE share FROM RECIPIENT recipient
    SHOW GRANTS ON SHARE share | SHOW GRANTS TO RECIPIENT recipient
    CREATE [OR REPLACE] TABLE [IF NOT EXISTS] catalog.schema.table [USING DELTA] LOCATION '/path'
    USE CATALOG catalog | USE SCHEMA [catalog.]schema | USE [catalog.]schema
    SHOW TABLES [IN catalog[.schema]] | DESCRIBE [TABLE] table | DESCRIBE HISTORY table [LIMIT n]
    ALTER TABLE table SET TBLPROPERTIES (key = value, ...) | SHOW TBLPROPERTIES table
    SELECT ... | WITH ... | INSERT INTO ... | UPDATE ... | DELETE FROM ... | MERGE INTO ...
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from helpers.exceptions import SharelabError, SqlParseError

if TYPE_CHECKING:
    import pandas as pd

    from helpers.provider import Provider

# --------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------

IDENT = "identifier"
QUOTED = "quoted identifier"
STRING = "string"
NUMBER = "number"
SYMBOL = "symbol"
EOF = "end of input"


@dataclass(frozen=True)
class Token:
    """One lexical token.

    :param kind: one of ``IDENT``, ``QUOTED``, ``STRING``, ``NUMBER``, ``SYMBOL``, ``EOF``.
    :param value: the identifier, the unescaped string, the number text or the symbol.
    :param pos: offset of the first character in the script.
    :param end: offset just after the last character.
    :param line: 1-based line of ``pos``.
    :param col: 1-based column of ``pos``.
    """

    kind: str
    value: str
    pos: int
    end: int
    line: int
    col: int

    def is_kw(self, *words: str) -> bool:
        """Whether this is an unquoted identifier equal to one of ``words`` (case-insensitive)."""
        return self.kind == IDENT and self.value.upper() in words

    def describe(self) -> str:
        """How the token is named in error messages."""
        if self.kind == EOF:
            return "end of statement"
        if self.kind == STRING:
            text = self.value if len(self.value) <= 30 else self.value[:27] + "..."
            return f"string '{text}'"
        if self.kind == QUOTED:
            return f"`{self.value}`"
        return f"'{self.value}'"


# Two-character operators kept together so data statements split and report cleanly.
_TWO_CHAR_SYMBOLS = {"<=", ">=", "<>", "!=", "==", "||", "::", "=>", "->"}


class _Lines:
    """Maps offsets to (line, column) for one script."""

    def __init__(self, text: str) -> None:
        self.starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.starts.append(i + 1)

    def locate(self, pos: int) -> tuple[int, int]:
        import bisect

        idx = bisect.bisect_right(self.starts, pos) - 1
        return idx + 1, pos - self.starts[idx] + 1


def _syntax_error(lines: _Lines, pos: int, expected: str, found: str) -> SqlParseError:
    line, col = lines.locate(pos)
    return SqlParseError(
        f"Syntax error at line {line}, column {col}: expected {expected}, found {found}",
        position=pos,
        line=line,
        column=col,
        expected=expected,
    )


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens (comments and whitespace dropped), ending with one ``EOF`` token.

    :raises SqlParseError: on an unterminated string, quoted name or block comment.
    """
    lines = _Lines(text)
    tokens: list[Token] = []
    i, n = 0, len(text)

    def make(kind: str, value: str, start: int, end: int) -> Token:
        line, col = lines.locate(start)
        return Token(kind, value, start, end, line, col)

    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise _syntax_error(lines, i, "'*/' to close the comment", "end of input")
            i = j + 2
        elif ch in "'\"`":
            j, parts = i + 1, []
            while True:
                k = text.find(ch, j)
                if k < 0:
                    what = "name" if ch == "`" else "string"
                    raise _syntax_error(lines, i, f"{ch} to close the {what}", "end of input")
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == ch:  # doubled quote stands for itself
                    parts.append(ch)
                    j = k + 2
                    continue
                break
            kind = QUOTED if ch == "`" else STRING
            tokens.append(make(kind, "".join(parts), i, k + 1))
            i = k + 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            j = i
            while j < n and (text[j].isdigit() or text[j] == "."):
                j += 1
            if (
                j < n
                and text[j] in "eE"
                and j + 1 < n
                and (text[j + 1].isdigit() or text[j + 1] in "+-")
            ):
                j += 2
                while j < n and text[j].isdigit():
                    j += 1
            # Suffixes such as 10L / 1.5D / 2BD (Spark literals) stay part of the number.
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(make(NUMBER, text[i:j], i, j))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(make(IDENT, text[i:j], i, j))
            i = j
        else:
            two = text[i : i + 2]
            if two in _TWO_CHAR_SYMBOLS:
                tokens.append(make(SYMBOL, two, i, i + 2))
                i += 2
            else:
                tokens.append(make(SYMBOL, ch, i, i + 1))
                i += 1
    tokens.append(make(EOF, "", n, n))
    return tokens


# --------------------------------------------------------------------------------------------------
# Statements
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# sqlglot dialect: Databricks, with '' as the quote escape (Spark would read 'it''s' as 'it' 's').
# --------------------------------------------------------------------------------------------------

_DIALECT: Any = None


def sqlglot_dialect() -> Any:
    """The sqlglot dialect used for data statements (built lazily: importing sqlglot takes a moment)."""
    global _DIALECT
    if _DIALECT is None:
        from sqlglot.dialects.databricks import Databricks

        class SharelabDatabricks(Databricks):
            class Tokenizer(Databricks.Tokenizer):
                STRING_ESCAPES = ["'"]

        _DIALECT = SharelabDatabricks
        # sqlglot warns before falling back to an opaque "Command"; the parser reports that case itself.
        logging.getLogger("sqlglot").setLevel(logging.ERROR)
    return _DIALECT


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------

_STATEMENT_STARTS = "CREATE, DROP, ALTER, SHOW, DESCRIBE, GRANT, REVOKE, SELECT, WITH, INSERT, UPDATE, DELETE or MERGE"
_DATA_KINDS = {
    "SELECT": "query",
    "WITH": "query",
    "VALUES": "query",
    "FROM": "query",
    "INSERT": "insert",
    "UPDATE": "update",
    "DELETE": "delete",
    "MERGE": "merge",
}


@dataclass(frozen=True)
class ParsedScript:
    """A script split into statements.

    :param statements: the parsed statements, in order.
    :param texts: the source text of each statement.
    """

    statements: tuple[Statement, ...]
    texts: tuple[str, ...]


class _Parser:
    """Recursive-descent parser over the tokens of one statement."""

    def __init__(self, text: str, tokens: list[Token], lines: _Lines) -> None:
        self.text = text
        self.tokens = tokens  # ends with an EOF token placed at the end of the statement
        self.lines = lines
        self.i = 0

    # -- token helpers ---------------------------------------------------------------------------

    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.peek()
        if tok.kind != EOF:
            self.i += 1
        return tok

    def error(self, expected: str, tok: Token | None = None) -> SqlParseError:
        tok = tok or self.peek()
        return _syntax_error(self.lines, tok.pos, expected, tok.describe())

    def at_kw(self, *words: str) -> bool:
        return self.peek().is_kw(*words)

    def accept_kw(self, *seq: str) -> bool:
        """Consume the keyword sequence ``seq`` when it is next."""
        for k, word in enumerate(seq):
            if not self.peek(k).is_kw(word):
                return False
        self.i += len(seq)
        return True

    def expect_kw(self, *seq: str) -> None:
        for word in seq:
            if not self.at_kw(word):
                raise self.error(word)
            self.advance()

    def expect_one_of(self, *words: str) -> str:
        if self.at_kw(*words):
            return self.advance().value.upper()
        raise self.error(_alternatives(words))

    def at_symbol(self, sym: str) -> bool:
        tok = self.peek()
        return tok.kind == SYMBOL and tok.value == sym

    def accept_symbol(self, sym: str) -> bool:
        if self.at_symbol(sym):
            self.advance()
            return True
        return False

    def expect_symbol(self, sym: str, expected: str | None = None) -> None:
        if not self.accept_symbol(sym):
            raise self.error(expected or f"'{sym}'")

    def expect_end(self, expected: str) -> None:
        if self.peek().kind != EOF:
            raise self.error(expected)

    # -- values ----------------------------------------------------------------------------------

    def name_part(self, what: str) -> str:
        tok = self.peek()
        if tok.kind in (IDENT, QUOTED):
            self.advance()
            return tok.value
        raise self.error(what)

    def name(self, what: str, parts: int | tuple[int, ...] = 1) -> list[str]:
        """A dotted name of ``parts`` parts (an int or the allowed counts)."""
        allowed = (parts,) if isinstance(parts, int) else parts
        first = self.peek()
        out = [self.name_part(what)]
        while self.at_symbol(".") and len(out) < max(allowed):
            self.advance()
            out.append(self.name_part(f"a name after '.' in {what}"))
        if len(out) not in allowed:
            found = f"'{'.'.join(out)}' ({len(out)} part{'s' * (len(out) != 1)})"
            raise _syntax_error(self.lines, first.pos, what, found)
        if self.at_symbol("."):
            raise self.error(f"end of {what}")
        return out

    def string(self, what: str) -> str:
        tok = self.peek()
        if tok.kind == STRING:
            self.advance()
            return tok.value
        raise self.error(what)

    def integer(self, what: str) -> int:
        tok = self.peek()
        if tok.kind == NUMBER and tok.value.isdigit():
            self.advance()
            return int(tok.value)
        raise self.error(what)

    def literal(self, what: str, typed: bool = False) -> Any:
        """A literal: string, number (optionally signed), TRUE/FALSE, NULL or DATE/TIMESTAMP 'text'.

        :param typed: numbers as int/float and booleans as bool; otherwise their text.
        """
        tok = self.peek()
        if tok.kind == STRING:
            self.advance()
            return tok.value
        if tok.kind == SYMBOL and tok.value in "+-" and self.peek(1).kind == NUMBER:
            self.advance()
            num = self.advance().value
            num = num if tok.value == "+" else "-" + num
            return _number(num) if typed else num
        if tok.kind == NUMBER:
            self.advance()
            return _number(tok.value) if typed else tok.value
        if tok.is_kw("TRUE", "FALSE"):
            self.advance()
            return tok.value.upper() == "TRUE" if typed else tok.value.lower()
        if tok.is_kw("NULL"):
            self.advance()
            return None
        if tok.is_kw("DATE", "TIMESTAMP") and self.peek(1).kind == STRING:
            self.advance()
            return self.advance().value
        raise self.error(what)

    def properties(self, keys: str) -> tuple[tuple[str, str], ...]:
        """``( key = value, ... )``; keys are strings or dotted names (``delta.enableChangeDataFeed``)."""
        self.expect_symbol("(", "'(' to start the property list")
        props: list[tuple[str, str]] = []
        seen: set[str] = set()
        while True:
            tok = self.peek()
            if tok.kind == STRING:
                self.advance()
                key = tok.value
            elif tok.kind in (IDENT, QUOTED):
                key = ".".join(self.name(keys, tuple(range(1, 10))))
            else:
                raise self.error(keys)
            if key.lower() in seen:
                raise _syntax_error(self.lines, tok.pos, "each property once", f"'{key}' again")
            seen.add(key.lower())
            self.expect_symbol("=", f"'=' after property '{key}'")
            value = self.literal("a value (string, number, TRUE or FALSE)")
            if value is None:
                raise self.error("a value other than NULL", self.tokens[self.i - 1])
            props.append((key, value))
            if self.accept_symbol(")"):
                return tuple(props)
            self.expect_symbol(",", "',' or ')' in the property list")

    # -- statements ------------------------------------------------------------------------------

    def statement(self) -> Statement:
        tok = self.peek()
        if tok.kind == SYMBOL and tok.value == "(":
            return self.data("query")
        if tok.kind != IDENT:
            raise self.error(_STATEMENT_STARTS)
        word = tok.value.upper()
        if word in _DATA_KINDS:
            return self.data(_DATA_KINDS[word])
        handler = {
            "CREATE": self.create,
            "DROP": self.drop,
            "ALTER": self.alter,
            "SHOW": self.show,
            "DESCRIBE": self.describe,
            "DESC": self.describe,
            "GRANT": self.grant,
            "REVOKE": self.revoke,
            "COMMENT": self.comment_on,
            "USE": self.use,
        }.get(word)
        if handler is None:
            raise self.error(_STATEMENT_STARTS)
        self.advance()
        stmt = handler()
        self.expect_end("end of statement (';' separates statements)")
        return stmt

    def create(self) -> Statement:
        replace = self.accept_kw("OR", "REPLACE")
        what = self.expect_one_of("SHARE", "RECIPIENT", "TABLE")
        if replace and what != "TABLE":
            raise self.error(
                "TABLE (OR REPLACE only applies to CREATE TABLE)", self.tokens[self.i - 1]
            )
        if_not_exists = self.accept_kw("IF", "NOT", "EXISTS")
        if what == "SHARE":
            name = self.name("a share name")[0]
            comment = self.string("the comment string") if self.accept_kw("COMMENT") else None
            return CreateShare(name, comment, if_not_exists)
        if what == "RECIPIENT":
            name = self.name("a recipient name")[0]
            comment: str | None = None
            props: tuple[tuple[str, str], ...] = ()
            seen: set[str] = set()
            while self.at_kw("COMMENT", "PROPERTIES", "USING"):
                tok = self.advance()
                clause = tok.value.upper()
                if clause in seen:
                    raise _syntax_error(
                        self.lines, tok.pos, f"{clause} at most once", f"'{tok.value}' again"
                    )
                seen.add(clause)
                if clause == "USING":
                    raise _syntax_error(
                        self.lines,
                        tok.pos,
                        "COMMENT, PROPERTIES or end of statement (USING ID creates a Databricks-to-"
                        "Databricks recipient, which the lab does not have: leave it out to create an "
                        "open-sharing token recipient)",
                        "'USING'",
                    )
                if clause == "COMMENT":
                    comment = self.string("the comment string")
                else:
                    props = self.properties("a property name string such as 'region'")
            return CreateRecipient(name, comment, props, if_not_exists)
        name = ".".join(self.name("a three-part table name catalog.schema.table", 3))
        if self.accept_kw("USING"):
            self.expect_kw("DELTA")
        if not self.at_kw("LOCATION"):
            raise self.error(
                "LOCATION '/path/to/delta/table' (CREATE TABLE registers an existing Delta table)"
            )
        self.advance()
        location = self.string("the table location string")
        return CreateTable(name, location, if_not_exists, replace)

    def drop(self) -> Statement:
        what = self.expect_one_of("SHARE", "RECIPIENT")
        if_exists = self.accept_kw("IF", "EXISTS")
        if what == "SHARE":
            return DropShare(self.name("a share name")[0], if_exists)
        return DropRecipient(self.name("a recipient name")[0], if_exists)

    def alter(self) -> Statement:
        what = self.expect_one_of("SHARE", "RECIPIENT", "TABLE")
        if what == "SHARE":
            return self.alter_share()
        if what == "RECIPIENT":
            return self.alter_recipient()
        name = self.table_ref()
        self.expect_kw("SET")
        self.expect_kw("TBLPROPERTIES")
        return SetTblProperties(name, self.properties("a table property name"))

    def alter_share(self) -> Statement:
        share = self.name("a share name")[0]
        action = self.expect_one_of("ADD", "REMOVE")
        if action == "REMOVE":
            what = self.expect_one_of("TABLE", "SCHEMA")
            if what == "SCHEMA":
                schema = ".".join(self.name("a schema name", (1, 2)))
                return AlterShareRemoveSchema(share, schema)
            alias = ".".join(self.name("the shared table name schema.table", 2))
            return AlterShareRemoveTable(share, alias)
        if self.accept_kw("SCHEMA"):
            source = ".".join(self.name("a two-part schema name catalog.schema", 2))
            history = self.history_clause() if self.at_kw("WITH", "WITHOUT") else False
            return AlterShareAddSchema(share, source, history)
        self.accept_kw("TABLE")
        source = self.table_source()
        clauses: dict[str, Any] = {}
        while True:
            tok = self.peek()
            if tok.is_kw("COMMENT", "PARTITION", "AS", "WITH", "WITHOUT"):
                clause = "HISTORY" if tok.is_kw("WITH", "WITHOUT") else tok.value.upper()
                if clause in clauses:
                    raise _syntax_error(
                        self.lines,
                        tok.pos,
                        f"the {clause} clause at most once",
                        f"'{tok.value}' again",
                    )
            else:
                options = {
                    "COMMENT": "COMMENT",
                    "PARTITION": "PARTITION",
                    "AS": "AS",
                    "HISTORY": "WITH HISTORY",
                }
                remaining = [text for key, text in options.items() if key not in clauses]
                self.expect_end(_alternatives([*remaining, "end of statement"]))
                break
            if clause == "COMMENT":
                self.advance()
                clauses[clause] = self.string("the comment string")
            elif clause == "PARTITION":
                self.advance()
                clauses[clause] = self.partition_clause()
            elif clause == "AS":
                self.advance()
                clauses[clause] = ".".join(self.name("the shared name schema.table", 2))
            else:
                clauses[clause] = self.history_clause(allow_start=True)
        history, start_version = clauses.get("HISTORY", (False, None))
        return AlterShareAddTable(
            share,
            source,
            alias=clauses.get("AS"),
            comment=clauses.get("COMMENT"),
            partition=clauses.get("PARTITION", ()),
            history=history,
            start_version=start_version,
        )

    def history_clause(self, allow_start: bool = False) -> Any:
        """``WITH HISTORY`` / ``WITHOUT HISTORY`` / ``WITH CHANGE DATA FEED [START VERSION n]``."""
        if self.accept_kw("WITHOUT"):
            self.expect_kw("HISTORY")
            return (False, None) if allow_start else False
        self.expect_kw("WITH")
        start: int | None = None
        if self.accept_kw("CHANGE", "DATA", "FEED"):
            if allow_start and self.accept_kw("START", "VERSION"):
                start = self.integer("a version number")
        else:
            if not self.at_kw("HISTORY"):
                raise self.error("HISTORY or CHANGE DATA FEED")
            self.advance()
        return (True, start) if allow_start else True

    def table_ref(self) -> str:
        """A table for data-plane statements: a 1-3 part name or ``delta.`/path```."""
        if self.at_kw("DELTA") and self.peek(1).kind == SYMBOL and self.peek(1).value == ".":
            if self.peek(2).kind == QUOTED:
                return self.table_source()
        return ".".join(self.name("a table name", (1, 2, 3)))

    def table_source(self) -> str:
        """``catalog.schema.table`` or ``delta.`/path```."""
        tok = self.peek()
        if tok.is_kw("DELTA") and self.peek(1).kind == SYMBOL and self.peek(1).value == ".":
            self.advance()
            self.advance()
            path_tok = self.peek()
            if path_tok.kind != QUOTED:
                raise self.error("a path in backticks, as in delta.`/path/to/table`")
            self.advance()
            return "delta.`" + path_tok.value.replace("`", "``") + "`"
        parts = self.name("a table catalog.schema.table or delta.`/path`", 3)
        return ".".join(parts)

    def partition_clause(self) -> tuple[PartitionValue, ...]:
        self.expect_symbol("(", "'(' to start the partition specification")
        items: list[PartitionValue] = []
        while True:
            column = self.name_part("a partition column name")
            self.expect_symbol("=", f"'=' after partition column '{column}'")
            if self.at_kw("CURRENT_RECIPIENT"):
                self.advance()
                self.expect_symbol("(", "'(' after CURRENT_RECIPIENT")
                if self.peek().kind == STRING:  # CURRENT_RECIPIENT('prop')
                    prop = self.advance().value
                    self.expect_symbol(")")
                else:
                    self.expect_symbol(")", "')' (write CURRENT_RECIPIENT().property)")
                    self.expect_symbol(".", "'.' and a recipient property name")
                    prop = self.name_part("a recipient property name")
                items.append(PartitionValue(column, prop, True))
            else:
                value = self.literal("a literal or CURRENT_RECIPIENT().property", typed=True)
                items.append(PartitionValue(column, value))
            if self.accept_symbol(")"):
                break
            self.expect_symbol(",", "',' or ')' in the partition specification")
        if self.at_symbol(","):
            raise self.error(
                "end of the PARTITION clause (the lab shares one partition specification per table; "
                "add the table again under another alias for a second one)"
            )
        return tuple(items)

    def alter_recipient(self) -> Statement:
        name = self.name("a recipient name")[0]
        action = self.expect_one_of("SET", "ROTATE", "REVOKE")
        if action == "SET":
            self.expect_kw("PROPERTIES")
            return AlterRecipientSetProperties(name, self.properties("a property name string"))
        if action == "REVOKE":
            self.expect_one_of("TOKENS", "TOKEN")
            return AlterRecipientRevokeTokens(name)
        self.expect_kw("TOKEN")
        seconds = 0
        if self.accept_kw("EXPIRE"):
            self.expect_kw("EXISTING")
            self.accept_kw("TOKEN")
            self.expect_kw("IN")
            seconds = self.integer("a number of seconds")
            self.expect_one_of("SECONDS", "SECOND")
        return AlterRecipientRotateToken(name, seconds)

    def show(self) -> Statement:
        if self.accept_kw("SHARES"):
            return ShowShares()
        if self.accept_kw("RECIPIENTS"):
            return ShowRecipients()
        if self.accept_kw("ALL"):
            self.expect_kw("IN")
            self.expect_kw("SHARE")
            return ShowAllInShare(self.name("a share name")[0])
        if self.at_kw("GRANTS", "GRANT"):
            self.advance()
            if self.accept_kw("ON"):
                self.expect_kw("SHARE")
                return ShowGrantsOnShare(self.name("a share name")[0])
            if self.accept_kw("TO"):
                self.expect_kw("RECIPIENT")
                return ShowGrantsToRecipient(self.name("a recipient name")[0])
            raise self.error("ON SHARE or TO RECIPIENT")
        if self.accept_kw("TABLES"):
            if self.at_kw("IN", "FROM"):
                self.advance()
                parts = self.name("a catalog or catalog.schema", (1, 2))
                return ShowTables(parts[0], parts[1] if len(parts) > 1 else None)
            return ShowTables()
        if self.accept_kw("TBLPROPERTIES"):
            return ShowTblProperties(self.table_ref())
        raise self.error("SHARES, ALL IN SHARE, RECIPIENTS, GRANTS, TABLES or TBLPROPERTIES")

    def describe(self) -> Statement:
        nxt = self.peek(1)
        names_follow = nxt.kind in (IDENT, QUOTED)
        if self.at_kw("SHARE") and names_follow:
            self.advance()
            return DescribeShare(self.name("a share name")[0])
        if self.at_kw("RECIPIENT") and names_follow:
            self.advance()
            return DescribeRecipient(self.name("a recipient name")[0])
        if self.at_kw("HISTORY") and names_follow:
            self.advance()
            name = self.table_ref()
            limit = self.integer("a row limit") if self.accept_kw("LIMIT") else None
            return DescribeHistory(name, limit)
        if self.at_kw("TABLE") and names_follow:
            self.advance()
        self.accept_kw("EXTENDED")
        if self.peek().kind not in (IDENT, QUOTED):
            raise self.error("SHARE, RECIPIENT, HISTORY or a table name")
        return DescribeTable(self.table_ref())

    def use(self) -> Statement:
        if self.accept_kw("CATALOG"):
            return Use(catalog=self.name("a catalog name")[0])
        if not self.accept_kw("SCHEMA"):
            self.accept_kw("DATABASE")
        parts = self.name("a schema name or catalog.schema", (1, 2))
        return Use(catalog=parts[0], schema=parts[1]) if len(parts) == 2 else Use(schema=parts[0])

    def comment_on(self) -> Statement:
        self.expect_kw("ON")
        kind = self.expect_one_of("SHARE", "RECIPIENT")
        name = self.name(f"a {kind.lower()} name")[0]
        self.expect_kw("IS")
        if self.accept_kw("NULL"):
            return CommentOn(kind.lower(), name, None)
        return CommentOn(kind.lower(), name, self.string("the comment string or NULL"))

    def grant(self) -> Statement:
        share, recipient = self.grant_target("TO")
        return GrantOnShare(share, recipient)

    def revoke(self) -> Statement:
        share, recipient = self.grant_target("FROM")
        return RevokeOnShare(share, recipient)

    def grant_target(self, preposition: str) -> tuple[str, str]:
        if not self.at_kw("SELECT"):
            raise self.error("SELECT (the only privilege on a share)")
        self.advance()
        self.expect_kw("ON")
        self.expect_kw("SHARE")
        share = self.name("a share name")[0]
        self.expect_kw(preposition)
        self.expect_kw("RECIPIENT")
        return share, self.name("a recipient name")[0]

    # -- data statements -------------------------------------------------------------------------

    def data(self, kind: str) -> DataStatement:
        import sqlglot
        from sqlglot.errors import ParseError, TokenError

        first, last = self.tokens[0], self.tokens[-2]
        text = self.text[first.pos : last.end]
        try:
            trees = [t for t in sqlglot.parse(text, read=sqlglot_dialect()) if t is not None]
        except ParseError as exc:
            raise self._sqlglot_error(exc, first) from None
        except (
            TokenError
        ) as exc:  # pragma: no cover - our tokenizer catches unterminated quotes first
            raise _syntax_error(self.lines, first.pos, "a valid statement", str(exc)) from None
        if len(trees) != 1:
            raise self.error("one statement")
        tree = trees[0]
        from sqlglot import exp

        expected_type = {
            "query": (exp.Query, exp.Values),
            "insert": exp.Insert,
            "update": exp.Update,
            "delete": exp.Delete,
            "merge": exp.Merge,
        }[kind]
        if not isinstance(tree, expected_type):  # sqlglot fell back to an opaque Command
            what = {"query": "a query"}.get(kind, f"a complete {kind.upper()} statement")
            raise _syntax_error(self.lines, first.pos, what, f"'{_snippet(text)}'")
        if isinstance(tree, exp.Select) and not tree.expressions:
            raise self.error("the columns to select after SELECT", self.tokens[-1])
        self.i = len(self.tokens) - 1
        return DataStatement(kind, text, tree)

    def _sqlglot_error(self, exc: Any, first: Token) -> SqlParseError:
        """Turn sqlglot's ParseError (statement-relative, last column of the token) into ours."""
        err = (exc.errors or [{}])[0]
        line, col = int(err.get("line") or 1), int(err.get("col") or 1)
        highlight = str(err.get("highlight") or "")
        raw = str(err.get("description") or exc)
        col = max(1, col - len(highlight) + 1)  # sqlglot reports the token's last column
        rel_lines = _Lines(self.text[first.pos :])
        idx = min(line - 1, len(rel_lines.starts) - 1)
        pos = min(first.pos + rel_lines.starts[idx] + col - 1, len(self.text))
        found = f"'{highlight}'" if highlight else "end of statement"
        if "SENTINEL" in raw:  # sqlglot ran out of tokens
            pos, found = self.tokens[-1].pos, "end of statement"
        description = raw.split(" but got ")[0].split(" for <class")[0].split(". Line ")[0]
        if description.startswith("Expected "):
            expected = description[len("Expected ") :]
        elif description.startswith("Expecting "):
            expected = f"'{description[len('Expecting ') :]}'"
        elif description.startswith("Required keyword"):
            expected = "a complete expression"
        else:
            expected = f"valid SQL ({description})"
        return _syntax_error(self.lines, pos, expected, found)


def _snippet(text: str, limit: int = 40) -> str:
    """The start of a statement, on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _number(text: str) -> int | float | str:
    """A number token as int or float (Spark suffixes such as ``10L`` are dropped); else the text."""
    core = text.rstrip("LlSsYyDdFf").removesuffix("B").removesuffix("b")
    for kind in (int, float):
        try:
            return kind(core)
        except ValueError:
            continue
    return text


def _alternatives(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def parse(text: str) -> ParsedScript:
    """Parse a script of ``;``-separated statements (empty statements and comments are skipped).

    :raises SqlParseError: naming the line, column and what was expected; nothing has run then.
    """
    if not isinstance(text, str):
        raise SqlParseError(f"expected SQL text (a str), got {type(text).__name__}")
    tokens = tokenize(text)
    lines = _Lines(text)
    statements: list[Statement] = []
    texts: list[str] = []
    current: list[Token] = []
    for tok in tokens:
        if tok.kind == EOF or (tok.kind == SYMBOL and tok.value == ";"):
            if current:
                # "end of statement" is reported just after the statement's last token
                last = current[-1].end
                end = Token(EOF, "", last, last, *lines.locate(last))
                parser = _Parser(text, [*current, end], lines)
                statements.append(parser.statement())
                texts.append(text[current[0].pos : current[-1].end])
            current = []
        else:
            current.append(tok)
    return ParsedScript(tuple(statements), tuple(texts))


def parse_one(text: str) -> Statement:
    """Parse exactly one statement.

    :raises SqlParseError: when ``text`` does not hold exactly one statement.
    """
    script = parse(text)
    if len(script.statements) != 1:
        raise SqlParseError(
            f"expected exactly one statement, found {len(script.statements)}",
            expected="one statement",
        )
    return script.statements[0]


# --------------------------------------------------------------------------------------------------
# Executor
# --------------------------------------------------------------------------------------------------


def _dispatch() -> dict[type, Callable[[Provider, Any], pd.DataFrame]]:
    return {
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
        DataStatement: lambda p, s: p._run_data_statement(s),
    }


def execute(provider: Provider, statement: Statement) -> pd.DataFrame:
    """Run one parsed statement against ``provider`` and return its result."""
    handler = _dispatch().get(type(statement))
    if handler is None:  # pragma: no cover - every statement class has a handler
        raise SharelabError(f"no executor for {type(statement).__name__}")
    return handler(provider, statement)


def iter_script(provider: Provider, text: str) -> Iterator[tuple[str, pd.DataFrame]]:
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


def run_script(provider: Provider, text: str) -> list[pd.DataFrame]:
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


# --------------------------------------------------------------------------------------------------
# CLI: sharelab sql "STATEMENTS"
# --------------------------------------------------------------------------------------------------


def format_frame(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """A result as a plain-text table (all columns, long values kept)."""
    import pandas as pd

    if frame.shape[1] == 0:
        return "OK"
    if list(frame.columns) == ["status"] and len(frame) == 1:
        return str(frame["status"].iloc[0])
    if frame.empty:
        return " | ".join(str(c) for c in frame.columns) + "\n(0 rows)"
    with pd.option_context(
        "display.max_rows",
        max_rows,
        "display.max_columns",
        None,
        "display.width",
        10_000,
        "display.max_colwidth",
        200,
    ):
        text = frame.to_string(index=False)
    rows = len(frame)
    return f"{text}\n({rows} row{'s' * (rows != 1)})"


def _cli_sql(args: argparse.Namespace) -> int:
    from helpers.provider import Provider

    text = args.statements
    if args.file and text:
        raise SharelabError("give the SQL either as an argument or with --file, not both")
    if text == "-":
        text = sys.stdin.read()
    elif args.file:
        try:
            with open(args.file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise SharelabError(f"cannot read SQL file {args.file}: {exc.strerror}") from None
    if not text or not text.strip():
        raise SharelabError('no SQL given: pass statements, as in sharelab sql "SHOW SHARES;"')
    provider = Provider(args.home)
    several = len(parse(text).statements) > 1
    # Print each result as soon as its statement ran: after a failure the user sees what was applied.
    for i, (statement_text, frame) in enumerate(iter_script(provider, text)):
        if several:
            if i:
                print()
            print(f"-- {statement_text.splitlines()[0][:100]}")
        print(format_frame(frame), flush=True)
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sharelab sql``."""
    parser = subparsers.add_parser(
        "sql",
        help="run provider SQL (Databricks dialect): shares, recipients, grants, tables",
        description=(
            "Run one or more ';'-separated SQL statements against the lab's provider catalog and "
            'print each result as a table. Example: sharelab sql "CREATE SHARE s; SHOW SHARES". '
            "See docs/sql.md for the grammar."
        ),
    )
    parser.add_argument(
        "statements",
        nargs="?",
        default="",
        help="the SQL text ('-' reads it from standard input)",
    )
    parser.add_argument("-f", "--file", help="read the SQL from this file instead")
    parser.set_defaults(func=_cli_sql)
