"""The provider SQL's tokenizer: tokens with their line and column, and positioned syntax errors.

Lexical rules: keywords and names are case-insensitive; ``--`` comments run to the end of the line and
``/* ... */`` comments may span lines; string literals use single or double quotes, a doubled quote
stands for itself (``'it''s'``) and backslashes are kept as they are (Windows paths work); names with
unusual characters go in backticks (```my share```, a doubled backtick stands for itself). Several
statements are separated by ``;``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from helpers.exceptions import SqlParseError

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


class Lines:
    """Maps offsets to (line, column) for one script."""

    def __init__(self, text: str) -> None:
        self.starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.starts.append(i + 1)

    def locate(self, pos: int) -> tuple[int, int]:
        """The 1-based (line, column) of offset ``pos``."""
        idx = bisect.bisect_right(self.starts, pos) - 1
        return idx + 1, pos - self.starts[idx] + 1


def syntax_error(lines: Lines, pos: int, expected: str, found: str) -> SqlParseError:
    """The error for ``pos``: line, column, what was expected and what was found."""
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
    lines = Lines(text)
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
                raise syntax_error(lines, i, "'*/' to close the comment", "end of input")
            i = j + 2
        elif ch in "'\"`":
            j, parts = i + 1, []
            while True:
                k = text.find(ch, j)
                if k < 0:
                    what = "name" if ch == "`" else "string"
                    raise syntax_error(lines, i, f"{ch} to close the {what}", "end of input")
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
