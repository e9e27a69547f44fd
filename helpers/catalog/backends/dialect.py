"""SQLite's dialect, as the catalog's components write it, translated to PostgreSQL's.

Every component writes its SQL once, in the portable subset the developers' guide asks for (``?``
placeholders, ``ON CONFLICT``); :func:`to_postgres` turns what remains SQLite-only into PostgreSQL, so the
same statements run on both backends:

- ``?`` placeholders become ``%s`` (and a literal ``%`` becomes ``%%``), outside string literals;
- in ``CREATE TABLE`` / ``ALTER TABLE ... ADD COLUMN``: ``TEXT ... COLLATE NOCASE`` becomes ``CITEXT``
  (case-insensitive comparisons, ``UNIQUE`` and ``ORDER BY``, like SQLite's ``NOCASE``; PostgreSQL folds
  every letter, SQLite ASCII letters only), ``INTEGER`` becomes ``BIGINT`` (SQLite integers are 64-bit),
  ``REAL`` becomes ``DOUBLE PRECISION`` (PostgreSQL's ``REAL`` is 32-bit), ``BLOB`` becomes ``BYTEA``,
  ``INTEGER PRIMARY KEY [AUTOINCREMENT]`` an identity column; a table without an integer primary key
  gains a last column ``rowid`` (an identity, so ``ORDER BY rowid`` keeps meaning insertion order);
- elsewhere ``COLLATE NOCASE`` is dropped (the columns are ``CITEXT`` already), ``LIKE`` becomes ``ILIKE``
  (SQLite's ``LIKE`` ignores case), ``IFNULL`` becomes ``COALESCE``, the two-argument scalar ``MIN``/``MAX``
  become ``LEAST``/``GREATEST``;
- ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``; ``INSERT OR REPLACE`` becomes
  ``INSERT ... ON CONFLICT (primary key) DO UPDATE SET`` every other column (the caller supplies the
  table's columns, see :class:`Translation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Translation", "to_postgres", "tokenize"]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])
  | (?P<param>\?\d*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
  | (?P<op>\|\||<=|>=|<>|!=|==|::|.)
    """,
    re.VERBOSE | re.DOTALL,
)

_TYPE_MAP = {"INTEGER": "BIGINT", "INT": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}


def tokenize(sql: str) -> list[tuple[str, str]]:
    """``sql`` as ``(kind, text)`` tokens: ws, comment, str, qid, param, word, num, op."""
    out: list[tuple[str, str]] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "op"
        out.append((kind, m.group()))
    return out


@dataclass(frozen=True)
class Translation:
    """A statement in PostgreSQL's dialect.

    ``upsert_table`` is set for ``INSERT OR REPLACE``: the statement ends with a ``{conflict}`` slot the
    caller fills with :meth:`conflict_clause` once it knows the table's columns (``upsert_columns``: the
    statement's column list, or None for "every column, in order").
    """

    sql: str
    upsert_table: str | None = None
    upsert_columns: tuple[str, ...] | None = None
    #: Whether the statement selects ``rowid``; when not, the added ``rowid`` column is left out of its rows
    #: (so ``SELECT *`` gives the same columns as on SQLite).
    names_rowid: bool = False

    def conflict_clause(self, key: tuple[str, ...], columns: tuple[str, ...]) -> str:
        """``ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c ...`` for the statement's non-key columns."""
        cols = self.upsert_columns or columns
        rest = [c for c in cols if c.lower() not in {k.lower() for k in key}]
        target = ", ".join(key)
        if not rest:
            return f" ON CONFLICT ({target}) DO NOTHING"
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
        return f" ON CONFLICT ({target}) DO UPDATE SET {sets}"


def _upper(tok: tuple[str, str]) -> str:
    return tok[1].upper() if tok[0] == "word" else ""


def _next_word(toks: list[tuple[str, str]], i: int) -> int:
    """Index of the first non-space, non-comment token at or after ``i`` (len(toks) when none)."""
    while i < len(toks) and toks[i][0] in ("ws", "comment"):
        i += 1
    return i


def _matching_paren(toks: list[tuple[str, str]], i: int) -> tuple[int, int]:
    """For ``toks[i] == '('``: (index of its ``)``, number of top-level commas inside)."""
    depth = 0
    commas = 0
    for j in range(i, len(toks)):
        text = toks[j][1]
        if toks[j][0] != "op":
            continue
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
            if depth == 0:
                return j, commas
        elif text == "," and depth == 1:
            commas += 1
    return len(toks) - 1, commas


def _ddl_column_defs(toks: list[tuple[str, str]], start: int, end: int) -> list[tuple[str, str]]:
    """The column definitions between ``start`` and ``end`` with SQLite's types and NOCASE translated."""
    out: list[tuple[str, str]] = []
    has_int_pk = False
    # split into top-level comma-separated parts
    parts: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for tok in toks[start:end]:
        if tok[0] == "op" and tok[1] == "(":
            depth += 1
        elif tok[0] == "op" and tok[1] == ")":
            depth -= 1
        if tok[0] == "op" and tok[1] == "," and depth == 0:
            parts.append([])
            continue
        parts[-1].append(tok)
    for n, part in enumerate(parts):
        words = [t[1].upper() for t in part if t[0] == "word"]
        nocase = "NOCASE" in words and "COLLATE" in words
        is_constraint = bool(words) and words[0] in (
            "PRIMARY",
            "UNIQUE",
            "CHECK",
            "FOREIGN",
            "CONSTRAINT",
        )
        int_pk = (
            not is_constraint
            and len(words) >= 4
            and words[1] in ("INTEGER", "INT")
            and words[2:4] == ["PRIMARY", "KEY"]
        )
        new: list[tuple[str, str]] = []
        seen_name = False
        skip = 0
        for k, tok in enumerate(part):
            if skip:
                skip -= 1
                continue
            up = _upper(tok)
            if up == "COLLATE" and nocase:
                j = _next_word(part, k + 1)
                if j < len(part) and _upper(part[j]) == "NOCASE":
                    skip = j - k
                    # drop the preceding whitespace too
                    while new and new[-1][0] == "ws":
                        new.pop()
                    continue
            if up == "AUTOINCREMENT":
                while new and new[-1][0] == "ws":
                    new.pop()
                continue
            if tok[0] in ("word", "qid") and not seen_name and not is_constraint:
                seen_name = True
                new.append(tok)
                continue
            if not is_constraint and seen_name and up in _TYPE_MAP and _first_type(part, k):
                if int_pk:
                    new.append(("word", "BIGINT GENERATED BY DEFAULT AS IDENTITY"))
                elif up == "TEXT":
                    new.append(tok)
                else:
                    new.append(("word", _TYPE_MAP[up]))
                continue
            if not is_constraint and seen_name and up == "TEXT" and nocase and _first_type(part, k):
                new.append(("word", "CITEXT"))
                continue
            new.append(tok)
        has_int_pk = has_int_pk or int_pk
        if n:
            out.append(("op", ","))
        out.extend(new)
    if not has_int_pk:
        out.append(("op", ", rowid BIGINT GENERATED ALWAYS AS IDENTITY "))
    return out


def _first_type(part: list[tuple[str, str]], k: int) -> bool:
    """Whether ``part[k]`` is the type word right after the column name."""
    seen = 0
    for tok in part[:k]:
        if tok[0] in ("word", "qid"):
            seen += 1
    return seen == 1


def _alter_add_column(toks: list[tuple[str, str]], start: int) -> list[tuple[str, str]]:
    """``ALTER TABLE t ADD [COLUMN] c TYPE ...``: the column definition's types translated."""
    defs = _ddl_column_defs(toks, start, len(toks))
    # an ADD COLUMN never adds the rowid column
    if defs and defs[-1][1].startswith(", rowid"):
        defs = defs[:-1]
    return toks[:start] + defs


@lru_cache(maxsize=2048)
def to_postgres(sql: str) -> Translation:
    """``sql`` (one statement, SQLite's dialect) in PostgreSQL's."""
    toks = tokenize(sql)
    upto_from = next((i for i, t in enumerate(toks) if _upper(t) == "FROM"), len(toks))
    # selected, not just ordered by
    names_rowid = any(_upper(t) == "ROWID" for t in toks[:upto_from])
    first = _next_word(toks, 0)
    head = _upper(toks[first]) if first < len(toks) else ""
    upsert_table: str | None = None
    upsert_columns: tuple[str, ...] | None = None
    suffix = ""
    if head == "CREATE":
        toks = _create_table(toks, first)
    elif head == "ALTER":
        words = [(i, _upper(t)) for i, t in enumerate(toks) if t[0] == "word"]
        names = [w for _, w in words]
        if "ADD" in names:
            idx = words[names.index("ADD")][0] + 1
            j = _next_word(toks, idx)
            if j < len(toks) and _upper(toks[j]) == "COLUMN":
                idx = j + 1
            toks = _alter_add_column(toks, idx)
    elif head in ("INSERT", "REPLACE"):
        toks, upsert_table, upsert_columns, suffix = _insert(toks, first, head)
    while toks and (toks[-1][0] in ("ws", "comment") or toks[-1] == ("op", ";")):
        toks = toks[:-1]
    if suffix:
        at = next((i for i, t in enumerate(toks) if _upper(t) == "RETURNING"), len(toks))
        text = _expressions(toks[:at]) + suffix + " " + _expressions(toks[at:])
    else:
        text = _expressions(toks)
    return Translation(text.rstrip(), upsert_table, upsert_columns, names_rowid)


def _create_table(toks: list[tuple[str, str]], first: int) -> list[tuple[str, str]]:
    words = [_upper(t) for t in toks if t[0] == "word"]
    if len(words) < 2 or (
        words[1] != "TABLE" and words[1:3] not in (["TEMP", "TABLE"], ["TEMPORARY", "TABLE"])
    ):
        return toks  # CREATE INDEX / VIEW / ...: expressions only
    for i, tok in enumerate(toks):
        if _upper(tok) == "AS":
            return toks  # CREATE TABLE ... AS SELECT
        if tok == ("op", "("):
            close, _ = _matching_paren(toks, i)
            return toks[: i + 1] + _ddl_column_defs(toks, i + 1, close) + toks[close:]
    return toks


def _insert(
    toks: list[tuple[str, str]], first: int, head: str
) -> tuple[list[tuple[str, str]], str | None, tuple[str, ...] | None, str]:
    """``INSERT OR IGNORE|REPLACE`` / ``REPLACE INTO``: the statement without the ``OR`` clause, the upsert
    table and columns, and the suffix to append."""
    i = _next_word(toks, first + 1)
    mode = ""
    if head == "REPLACE":
        mode = "REPLACE"
        toks = toks[:first] + [("word", "INSERT")] + toks[first + 1 :]
    elif i < len(toks) and _upper(toks[i]) == "OR":
        j = _next_word(toks, i + 1)
        mode = _upper(toks[j])
        toks = toks[:i] + toks[j + 1 :]
    if not mode:
        return toks, None, None, ""
    if mode == "IGNORE":
        return toks, None, None, " ON CONFLICT DO NOTHING"
    if mode != "REPLACE":
        return toks, None, None, ""
    k = _next_word(toks, first + 1)  # INTO
    k = _next_word(toks, k + 1)  # table name
    table = toks[k][1]
    m = _next_word(toks, k + 1)
    columns: tuple[str, ...] | None = None
    if m < len(toks) and toks[m] == ("op", "("):
        close, _ = _matching_paren(toks, m)
        columns = tuple(t[1] for t in toks[m + 1 : close] if t[0] in ("word", "qid"))
    return toks, table, columns, "{conflict}"


def _subquery_aliases(toks: list[tuple[str, str]]) -> dict[int, str]:
    """``FROM (SELECT ...)`` without an alias (SQLite allows it, PostgreSQL 15 does not): the ``)`` tokens
    to replace by ``) AS _subquery_N``."""
    out: dict[int, str] = {}
    for i, tok in enumerate(toks):
        if _upper(tok) not in ("FROM", "JOIN"):
            continue
        j = _next_word(toks, i + 1)
        if j >= len(toks) or toks[j] != ("op", "("):
            continue
        k = _next_word(toks, j + 1)
        if k >= len(toks) or _upper(toks[k]) not in ("SELECT", "WITH", "VALUES"):
            continue
        close, _ = _matching_paren(toks, j)
        after = _next_word(toks, close + 1)
        follow = _upper(toks[after]) if after < len(toks) else ""
        named = after < len(toks) and (
            toks[after][0] == "qid" or (toks[after][0] == "word" and follow not in _CLAUSE_WORDS)
        )
        if not named:
            out[close] = f") AS _subquery_{len(out) + 1}"
    return out


_CLAUSE_WORDS = {
    "WHERE",
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "CROSS",
    "FULL",
    "ON",
    "HAVING",
    "WINDOW",
    "RETURNING",
    "NATURAL",
    "USING",
}


def _expressions(toks: list[tuple[str, str]]) -> str:
    """The tokens as text with placeholders, NOCASE, LIKE, IFNULL and scalar MIN/MAX translated."""
    out: list[str] = []
    n = len(toks)
    replace_at = _subquery_aliases(toks)
    i = 0
    while i < n:
        kind, text = toks[i]
        up = text.upper() if kind == "word" else ""
        if i in replace_at:
            out.append(replace_at[i])
            i += 1
            continue
        if kind == "param":
            out.append("%s")
        elif kind == "op" and text == "%":
            out.append("%%")
        elif kind in ("str", "qid", "comment"):
            out.append(text.replace("%", "%%") if kind != "comment" else "")
        elif up == "COLLATE":
            j = _next_word(toks, i + 1)
            if j < n and _upper(toks[j]) == "NOCASE":
                i = j + 1
                continue
            out.append(text)
        elif up == "LIKE":
            out.append("ILIKE")
        elif up == "IFNULL":
            out.append("COALESCE")
        elif up in ("MIN", "MAX"):
            j = _next_word(toks, i + 1)
            if j < n and toks[j] == ("op", "("):
                _close, commas = _matching_paren(toks, j)
                if commas >= 1:
                    out.append("LEAST" if up == "MIN" else "GREATEST")
                    i += 1
                    continue
            out.append(text)
        else:
            out.append(text)
        i += 1
    return "".join(out)
