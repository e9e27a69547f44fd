"""SQL ``predicateHints`` (deprecated, still sent by older clients), read best effort.

Each hint is a SQL boolean expression over the table's columns, such as ``day = '2024-01-05'`` or
``region IN ('emea', 'amer') AND amount >= 10``. The ones this module can read are translated into the
``jsonPredicateHints`` tree of :mod:`helpers.server.predicates` (typed by the table's schema) and
evaluated with the same conservative rules; a hint it cannot read (an unknown column or type, a
function call, a syntax it does not know) is ignored, and then ``limitHint`` is not applied either
(a file that could match is never dropped).

Grammar: ``OR`` / ``AND`` / ``NOT``, parentheses, ``col op literal`` and ``literal op col`` with
``= == != <> < <= > >=``, ``col IS [NOT] NULL``, ``col [NOT] IN (literal, ...)``; literals are
``'strings'`` (``''`` escapes a quote), numbers, ``TRUE``/``FALSE`` and ``DATE '...'`` /
``TIMESTAMP '...'``. Nesting is capped at :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from helpers.server.predicates import Predicate

__all__ = ["MAX_DEPTH", "column_types", "parse_sql_hint"]

MAX_DEPTH = 50
_MAX_HINT_CHARS = 64 * 1024
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<op><=|>=|<>|!=|==|=|<|>|\(|\)|,)|(?P<id>`[^`]+`|[A-Za-z_][A-Za-z0-9_.]*))"
)
_TYPES = {
    "string": "string",
    "long": "long",
    "integer": "int",
    "short": "int",
    "byte": "int",
    "date": "date",
    "timestamp": "timestamp",
    "double": "double",
    "float": "float",
    "boolean": "bool",
}
_OPS = {
    "=": "equal",
    "==": "equal",
    "<": "lessThan",
    "<=": "lessThanOrEqual",
    ">": "greaterThan",
    ">=": "greaterThanOrEqual",
}
_FLIPPED = {
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
    "=": "=",
    "==": "==",
    "!=": "!=",
    "<>": "<>",
}


class _Unreadable(ValueError):
    pass


def column_types(schema_string: str) -> dict[str, str]:
    """Top-level column name (lower-cased) -> predicate valueType, for the types hints can compare."""
    try:
        fields = json.loads(schema_string).get("fields") or []
    except (ValueError, AttributeError):
        return {}
    out: dict[str, str] = {}
    for f in fields:
        if isinstance(f, dict) and isinstance(f.get("type"), str) and f["type"] in _TYPES:
            out[str(f.get("name", "")).lower()] = _TYPES[f["type"]]
    return out


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _Unreadable(f"cannot read {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], types: dict[str, str]) -> None:
        self.toks = tokens
        self.i = 0
        self.types = types

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else ("end", "")

    def keyword(self, word: str) -> bool:
        kind, value = self.peek()
        if kind == "id" and value.upper() == word:
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if self.peek()[1] != value:
            raise _Unreadable(f"expected {value!r}")
        self.i += 1

    def expr(self, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise _Unreadable("nested too deeply")
        children = [self.conj(depth + 1)]
        while self.keyword("OR"):
            children.append(self.conj(depth + 1))
        return children[0] if len(children) == 1 else {"op": "or", "children": children}

    def conj(self, depth: int) -> dict[str, Any]:
        children = [self.neg(depth + 1)]
        while self.keyword("AND"):
            children.append(self.neg(depth + 1))
        return children[0] if len(children) == 1 else {"op": "and", "children": children}

    def neg(self, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise _Unreadable("nested too deeply")
        if self.keyword("NOT"):
            return {"op": "not", "children": [self.neg(depth + 1)]}
        if self.peek()[1] == "(":
            self.i += 1
            inner = self.expr(depth + 1)
            self.expect(")")
            return inner
        return self.comparison()

    def column(self, value: str) -> tuple[dict[str, Any], str] | None:
        name = value[1:-1] if value.startswith("`") else value
        vt = self.types.get(name.lower())
        if vt is None:
            return None
        return {"op": "column", "name": name, "valueType": vt}, vt

    def literal(self, vt: str) -> dict[str, Any]:
        kind, value = self.peek()
        self.i += 1
        if kind == "id" and value.upper() in ("DATE", "TIMESTAMP") and self.peek()[0] == "str":
            kind, value = self.peek()
            self.i += 1
        if kind == "str":
            text = value[1:-1].replace("''", "'")
        elif kind == "num" and vt in ("int", "long", "float", "double"):
            text = value
        elif kind == "id" and value.upper() in ("TRUE", "FALSE") and vt == "bool":
            text = value.lower()
        else:
            raise _Unreadable(f"literal {value!r} does not fit a {vt} column")
        return {"op": "literal", "value": text, "valueType": vt}

    def comparison(self) -> dict[str, Any]:
        kind, value = self.peek()
        col = self.column(value) if kind == "id" else None
        if col is None:  # literal op column
            nxt_kind, nxt = self.peek(2)
            other = self.column(nxt) if nxt_kind == "id" else None
            op = self.peek(1)[1]
            if other is None or op not in _FLIPPED:
                raise _Unreadable("a comparison needs a known column")
            lit = self.literal(other[1])
            self.i += 2
            return self._compare(_FLIPPED[op], other[0], lit)
        self.i += 1
        node, vt = col
        if self.keyword("IS"):
            negated = self.keyword("NOT")
            if not self.keyword("NULL"):
                raise _Unreadable("IS needs NULL")
            is_null = {"op": "isNull", "children": [node]}
            return {"op": "not", "children": [is_null]} if negated else is_null
        negated = self.keyword("NOT")
        if self.keyword("IN"):
            self.expect("(")
            values = [self.literal(vt)]
            while self.peek()[1] == ",":
                self.i += 1
                values.append(self.literal(vt))
            self.expect(")")
            eqs = [{"op": "equal", "children": [node, v]} for v in values]
            tree = eqs[0] if len(eqs) == 1 else {"op": "or", "children": eqs}
            return {"op": "not", "children": [tree]} if negated else tree
        if negated:
            raise _Unreadable("NOT must precede IN here")
        op = self.peek()[1]
        if op not in _FLIPPED:
            raise _Unreadable(f"unknown operator {op!r}")
        self.i += 1
        return self._compare(op, node, self.literal(vt))

    @staticmethod
    def _compare(op: str, column: dict[str, Any], literal: dict[str, Any]) -> dict[str, Any]:
        if op in ("!=", "<>"):
            return {"op": "not", "children": [{"op": "equal", "children": [column, literal]}]}
        return {"op": _OPS[op], "children": [column, literal]}


def parse_sql_hint(hint: object, types: dict[str, str]) -> Predicate | None:
    """The predicate of one SQL hint over columns ``types`` (:func:`column_types`), or None when it
    cannot be read (then it is ignored)."""
    if not isinstance(hint, str) or not hint.strip() or len(hint) > _MAX_HINT_CHARS:
        return None
    try:
        parser = _Parser(_tokens(hint), types)
        tree = parser.expr(0)
        if parser.peek()[0] != "end":
            return None
        return Predicate(tree)
    except (ValueError, RecursionError):  # _Unreadable, and a tree the predicate checker refuses
        return None
