"""A cursor over one statement's tokens: the token and value helpers the parser is built from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from helpers.exceptions import SqlParseError
from helpers.sql.lexer import EOF, IDENT, NUMBER, QUOTED, STRING, SYMBOL, Lines, Token, syntax_error


class TokenCursor:
    """Reads the tokens of one statement (ending with an EOF token) and reports positioned errors."""

    def __init__(self, text: str, tokens: list[Token], lines: Lines) -> None:
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
        return syntax_error(self.lines, tok.pos, expected, tok.describe())

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
        raise self.error(alternatives(words))

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
            raise syntax_error(self.lines, first.pos, what, found)
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
                raise syntax_error(self.lines, tok.pos, "each property once", f"'{key}' again")
            seen.add(key.lower())
            self.expect_symbol("=", f"'=' after property '{key}'")
            value = self.literal("a value (string, number, TRUE or FALSE)")
            if value is None:
                raise self.error("a value other than NULL", self.tokens[self.i - 1])
            props.append((key, value))
            if self.accept_symbol(")"):
                return tuple(props)
            self.expect_symbol(",", "',' or ')' in the property list")


def _number(text: str) -> int | float | str:
    """A number token as int or float (Spark suffixes such as ``10L`` are dropped); else the text."""
    core = text.rstrip("LlSsYyDdFf").removesuffix("B").removesuffix("b")
    for kind in (int, float):
        try:
            return kind(core)
        except ValueError:
            continue
    return text


def alternatives(words: Sequence[str]) -> str:
    """``A``, ``A or B``, ``A, B or C``: a list of choices for error messages."""
    words = list(words)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]
