"""The provider SQL's parser (Databricks dialect): a script of ``;``-separated statements → statements.

Control-plane statements (shares, recipients, grants, table registration, history, properties) are parsed by
a small hand-written recursive-descent parser that knows where every token is, so a syntax error names the
line, the column and what was expected. Data statements (``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``,
``MERGE``) are handed to sqlglot (see :mod:`helpers.sql.dialect`); the provider resolves their table names
against the catalog and runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from helpers.exceptions import SqlParseError
from helpers.sql.cursor import TokenCursor, alternatives
from helpers.sql.ddl import parse_ddl_statement
from helpers.sql.dialect import sqlglot_dialect
from helpers.sql.lexer import (
    EOF,
    IDENT,
    QUOTED,
    STRING,
    SYMBOL,
    Lines,
    Token,
    syntax_error,
    tokenize,
)
from helpers.sql.statements import (
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
    PartitionValue,
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
)
from helpers.sql.views import parse_view_statement

if TYPE_CHECKING:
    from sqlglot.errors import ParseError

_STATEMENT_STARTS = (
    "CREATE, DROP, ALTER, SHOW, DESCRIBE, GRANT, REVOKE, SELECT, WITH, INSERT, UPDATE, DELETE, MERGE, "
    "USE, COMMENT, TRUNCATE, OPTIMIZE, VACUUM, RESTORE or SET"
)
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


class _Parser(TokenCursor):
    """Recursive-descent parser over the tokens of one statement."""

    # -- statements ------------------------------------------------------------------------------

    def statement(self) -> Statement:
        tok = self.peek()
        if tok.kind == SYMBOL and tok.value == "(":
            return self.data("query")
        if tok.kind != IDENT:
            raise self.error(_STATEMENT_STARTS)
        view_statement = parse_view_statement(self)  # views and IP access lists (helpers.sql.views)
        if view_statement is not None:
            self.expect_end("end of statement (';' separates statements)")
            return view_statement
        # catalogs, schemas, managed tables, maintenance (helpers.sql.ddl)
        ddl_statement = parse_ddl_statement(self, lambda i: self.data("query", i))
        if ddl_statement is not None:
            return ddl_statement
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
            return self.create_share(if_not_exists)
        if what == "RECIPIENT":
            return self.create_recipient(if_not_exists)
        return self.create_table(if_not_exists, replace)

    def create_share(self, if_not_exists: bool) -> Statement:
        name = self.name("a share name")[0]
        comment = self.string("the comment string") if self.accept_kw("COMMENT") else None
        return CreateShare(name, comment, if_not_exists)

    def create_recipient(self, if_not_exists: bool) -> Statement:
        name = self.name("a recipient name")[0]
        comment: str | None = None
        props: tuple[tuple[str, str], ...] = ()
        seen: set[str] = set()
        while self.at_kw("COMMENT", "PROPERTIES", "USING"):
            tok = self.advance()
            clause = tok.value.upper()
            if clause in seen:
                raise syntax_error(
                    self.lines, tok.pos, f"{clause} at most once", f"'{tok.value}' again"
                )
            seen.add(clause)
            if clause == "USING":
                raise syntax_error(
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

    def create_table(self, if_not_exists: bool, replace: bool) -> Statement:
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
                    raise syntax_error(
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
                self.expect_end(alternatives([*remaining, "end of statement"]))
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

    def data(self, kind: str, start: int = 0) -> DataStatement:
        import sqlglot
        from sqlglot.errors import ParseError, TokenError

        first, last = self.tokens[start], self.tokens[-2]
        text = self.text[first.pos : last.end]
        try:
            trees = [t for t in sqlglot.parse(text, read=sqlglot_dialect()) if t is not None]
        except ParseError as exc:
            raise self._sqlglot_error(exc, first) from None
        except (
            TokenError
        ) as exc:  # pragma: no cover - our tokenizer catches unterminated quotes first
            raise syntax_error(self.lines, first.pos, "a valid statement", str(exc)) from None
        if len(trees) != 1:
            raise self.error("one statement")
        tree = trees[0]
        from sqlglot import exp

        expected_types: dict[str, type | tuple[type, ...]] = {
            "query": (exp.Query, exp.Values),
            "insert": exp.Insert,
            "update": exp.Update,
            "delete": exp.Delete,
            "merge": exp.Merge,
        }
        expected_type = expected_types[kind]
        if not isinstance(tree, expected_type):  # sqlglot fell back to an opaque Command
            what = {"query": "a query"}.get(kind, f"a complete {kind.upper()} statement")
            raise syntax_error(self.lines, first.pos, what, f"'{_snippet(text)}'")
        if isinstance(tree, exp.Select) and not tree.expressions:
            raise self.error("the columns to select after SELECT", self.tokens[-1])
        self.i = len(self.tokens) - 1
        return DataStatement(kind, text, tree)

    def _sqlglot_error(self, exc: ParseError, first: Token) -> SqlParseError:
        """Turn sqlglot's ParseError (statement-relative, last column of the token) into ours."""
        err = (exc.errors or [{}])[0]
        line, col = int(err.get("line") or 1), int(err.get("col") or 1)
        highlight = str(err.get("highlight") or "")
        raw = str(err.get("description") or exc)
        col = max(1, col - len(highlight) + 1)  # sqlglot reports the token's last column
        rel_lines = Lines(self.text[first.pos :])
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
        return syntax_error(self.lines, pos, expected, found)


def _snippet(text: str, limit: int = 40) -> str:
    """The start of a statement, on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse(text: str) -> ParsedScript:
    """Parse a script of ``;``-separated statements (empty statements and comments are skipped).

    :raises SqlParseError: naming the line, column and what was expected; nothing has run then.
    """
    if not isinstance(text, str):
        raise SqlParseError(f"expected SQL text (a str), got {type(text).__name__}")
    lines = Lines(text)
    if "\x00" in text:
        raise syntax_error(lines, text.index("\x00"), "SQL text", "a NUL byte (remove it)")
    tokens = tokenize(text)
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
                try:
                    statements.append(parser.statement())
                except RecursionError:
                    raise SqlParseError(
                        f"the statement at line {current[0].line} nests too deeply "
                        f"({_snippet(text[current[0].pos :])}); write it with fewer nested levels",
                        expected="a shallower expression",
                    ) from None
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


def parse_partition_spec(text: str) -> tuple[PartitionValue, ...]:
    """Parse a ``PARTITION`` body such as ``region = 'EU'`` or ``(region = CURRENT_RECIPIENT().region)``.

    :raises SqlParseError: naming the position and what was expected.
    """
    text = text.strip()
    if not text.startswith("("):
        text = f"({text})"
    parser = _Parser(text, tokenize(text), Lines(text))
    items = parser.partition_clause()
    parser.expect_end("end of the partition specification")
    return items
