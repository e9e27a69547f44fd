"""``jsonPredicateHints`` file skipping and ``limitHint``, conservative by construction.

A hint lets the server leave out files that provably hold no matching row; it is never an error. Each
node is evaluated to the *set of outcomes* its rows can produce, a subset of {TRUE, FALSE, NULL} (SQL
three-valued logic). A file is skipped only when TRUE is impossible at the root. This is the
ALWAYS/NEVER/MAYBE scheme of the protocol reference §5.2 made exact about NULLs, and it fixes the
reference server's pitfalls:

(a) ``not`` over a range: NOT swaps TRUE and FALSE and keeps NULL, so NOT(maybe) stays maybe;
(b) ``isNull`` on a data column uses ``nullCount`` (0 -> never, ``numRecords`` -> always);
(c) comparisons with a NULL partition value yield NULL (never TRUE, and NOT of it is still not TRUE);
(d) string bounds of 32+ characters may be truncated: the max is then treated as open-ended;
(e) timestamp stats have millisecond precision: the max is widened by 1 ms.

Malformed hints (unknown op, wrong arity, mismatched value types, bad literals, depth > 100, > 1 MiB)
disable skipping: :func:`parse_json_predicate` returns None and every file is returned.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

__all__ = [
    "Predicate",
    "apply_limit_hint",
    "file_always_matches",
    "file_matches",
    "parse_json_predicate",
    "parse_stats",
]

log = logging.getLogger(__name__)

T, F, N = 1, 2, 4  # outcome bits: TRUE, FALSE, NULL
ALL = T | F | N
MAX_HINT_BYTES = 1 << 20
MAX_DEPTH = 100
TRUNCATED_STRING_LEN = 32

VALUE_TYPES = {"bool", "int", "long", "string", "date", "float", "double", "timestamp"}
COMPARISONS = {"equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"}
_FLIP = {
    "equal": "equal",
    "lessThan": "greaterThan",
    "lessThanOrEqual": "greaterThanOrEqual",
    "greaterThan": "lessThan",
    "greaterThanOrEqual": "lessThanOrEqual",
}


class _Malformed(ValueError):
    pass


def _parse_value(value: Any, value_type: str) -> Any:
    """A literal / partition value / stats bound as a comparable Python value (raises on failure)."""
    if value_type in ("int", "long"):
        if isinstance(value, bool):
            raise ValueError("bool is not an int")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        return int(str(value).strip())
    if value_type in ("float", "double"):
        result = float(value)
        if math.isnan(result):
            raise ValueError("NaN bounds are not comparable")
        return result
    if value_type == "bool":
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise ValueError("not a boolean")
    if value_type == "string":
        if not isinstance(value, str):
            raise ValueError("not a string")
        return value
    if value_type == "date":
        text = str(value).strip()
        return date.fromisoformat(text[:10]) if len(text) >= 10 else date.fromisoformat(text)
    if value_type == "timestamp":
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:  # partition values are 'yyyy-mm-dd hh:mm:ss[.f]' in UTC
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1_000_000)
    raise ValueError(f"unknown valueType {value_type}")


@lru_cache(maxsize=200_000)
def parse_stats(stats: str | None) -> dict[str, Any] | None:
    """The parsed ``stats`` string of an add action (cached; None when absent or malformed)."""
    if not stats:
        return None
    try:
        parsed = json.loads(stats)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _lookup(mapping: Any, name: str) -> tuple[bool, Any]:
    """Find ``name`` in a stats map: exact, then case-insensitive, then as a dotted nested path."""
    if not isinstance(mapping, dict):
        return False, None
    if name in mapping:
        return True, mapping[name]
    lower = name.lower()
    for key, value in mapping.items():
        if key.lower() == lower:
            return True, value
    if "." in name:
        head, _, rest = name.partition(".")
        found, sub = _lookup(mapping, head)
        if found:
            return _lookup(sub, rest)
    return False, None


@dataclass(frozen=True)
class FileView:
    """What the evaluator sees of one file.

    :param partition_values: the add's ``partitionValues`` keyed by lower-cased column name.
    :param stats: the parsed stats, or None.
    """

    partition_values: Mapping[str, str | None]
    stats: Mapping[str, Any] | None


class Predicate:
    """A validated ``jsonPredicateHints`` tree. Use :meth:`outcomes` or :func:`file_matches`."""

    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree = tree
        self._validate(tree, 0)

    # ------------------------------------------------------------------ validation
    def _validate(self, node: Any, depth: int) -> str | None:
        """Validate ``node``; returns the valueType for leaves, None for boolean nodes."""
        if depth > MAX_DEPTH:
            raise _Malformed("tree deeper than 100")
        if not isinstance(node, dict):
            raise _Malformed("node is not an object")
        op = node.get("op")
        children = node.get("children") or []
        if not isinstance(children, list):
            raise _Malformed("children is not a list")
        if op == "column":
            if not isinstance(node.get("name"), str) or not node["name"]:
                raise _Malformed("column without a name")
            if node.get("valueType") not in VALUE_TYPES:
                raise _Malformed("column with an unknown valueType")
            return node["valueType"]
        if op == "literal":
            vt = node.get("valueType")
            if vt not in VALUE_TYPES or not isinstance(node.get("value"), str):
                raise _Malformed("literal without a string value or with an unknown valueType")
            try:
                _parse_value(node["value"], vt)
            except (ValueError, TypeError) as exc:
                raise _Malformed(f"bad literal: {exc}") from None
            return vt
        if op in ("and", "or"):
            if len(children) < 2:
                raise _Malformed(f"{op} needs at least 2 children")
            for child in children:
                if self._validate(child, depth + 1) is not None:
                    raise _Malformed(f"{op} child is not a boolean expression")
            return None
        if op == "not":
            if len(children) != 1 or self._validate(children[0], depth + 1) is not None:
                raise _Malformed("not needs exactly one boolean child")
            return None
        if op == "isNull":
            if (
                len(children) != 1
                or not isinstance(children[0], dict)
                or children[0].get("op") != "column"
            ):
                raise _Malformed("isNull needs exactly one column child")
            self._validate(children[0], depth + 1)
            return None
        if op in COMPARISONS:
            if len(children) != 2:
                raise _Malformed(f"{op} needs exactly 2 children")
            types = [self._validate(child, depth + 1) for child in children]
            if None in types or types[0] != types[1]:
                raise _Malformed(f"{op} children must be leaves of the same valueType")
            return None
        raise _Malformed(f"unknown op {op!r}")

    # ------------------------------------------------------------------ evaluation
    def outcomes(self, view: FileView) -> int:
        """The possible outcomes (bit set of T, F, N) of the predicate over the rows of a file."""
        return self._eval(self.tree, view)

    def _eval(self, node: dict[str, Any], view: FileView) -> int:
        op = node["op"]
        if op == "and":
            results = [self._eval(c, view) for c in node["children"]]
            out = 0
            if all(r & T for r in results):
                out |= T
            if any(r & F for r in results):
                out |= F
            if any(r & N for r in results) and all(r & (T | N) for r in results):
                out |= N
            return out or ALL
        if op == "or":
            results = [self._eval(c, view) for c in node["children"]]
            out = 0
            if any(r & T for r in results):
                out |= T
            if all(r & F for r in results):
                out |= F
            if any(r & N for r in results) and all(r & (F | N) for r in results):
                out |= N
            return out or ALL
        if op == "not":
            r = self._eval(node["children"][0], view)
            return ((r & T) and F) | ((r & F) and T) | (r & N)
        if op == "isNull":
            return self._is_null(node["children"][0], view)
        return self._compare(op, node["children"][0], node["children"][1], view)

    def _is_null(self, column: dict[str, Any], view: FileView) -> int:
        name = column["name"]
        key = name.lower()
        if key in view.partition_values:
            pv = view.partition_values[key]
            return T if pv is None or pv == "" else F
        stats = view.stats
        if stats is None:
            return T | F
        found, nulls = _lookup(stats.get("nullCount"), name)
        if not found or not isinstance(nulls, int | float):
            return T | F
        if nulls == 0:
            return F
        num = stats.get("numRecords")
        if isinstance(num, int | float) and nulls >= num:
            return T
        return T | F

    def _compare(self, op: str, left: dict[str, Any], right: dict[str, Any], view: FileView) -> int:
        if left["op"] == "literal" and right["op"] == "column":
            left, right, op = right, left, _FLIP[op]
        vt = left["valueType"]
        if left["op"] == "literal":  # two literals: a constant
            a, b = _parse_value(left["value"], vt), _parse_value(right["value"], vt)
            return T if _holds(op, a, b) else F
        if right["op"] == "column":  # column vs column: no stats reasoning
            return ALL
        value = _parse_value(right["value"], vt)
        name = left["name"]
        key = name.lower()
        if key in view.partition_values:
            pv = view.partition_values[key]
            if pv is None or pv == "":
                return N
            try:
                return T if _holds(op, _parse_value(pv, vt), value) else F
            except (ValueError, TypeError):
                return ALL
        return self._compare_stats(op, name, vt, value, view.stats)

    def _compare_stats(
        self, op: str, name: str, vt: str, value: Any, stats: Mapping[str, Any] | None
    ) -> int:
        if stats is None:
            return ALL
        nulls_found, nulls = _lookup(stats.get("nullCount"), name)
        num = stats.get("numRecords")
        if not nulls_found or not isinstance(nulls, int | float):
            null_bits = N
        elif nulls == 0:
            null_bits = 0
        elif isinstance(num, int | float) and nulls >= num:
            return N  # every row is NULL: a comparison is never TRUE
        else:
            null_bits = N
        has_min, lo = _lookup(stats.get("minValues"), name)
        has_max, hi = _lookup(stats.get("maxValues"), name)
        if not has_min or not has_max or lo is None or hi is None:
            return ALL
        try:
            lo_v = _parse_value(lo, vt)
            hi_v = _parse_value(hi, vt)
        except (ValueError, TypeError):
            return ALL
        if vt == "timestamp":
            hi_v += 1000  # (e) stats are in ms, data in µs
        open_max = vt == "string" and len(hi) >= TRUNCATED_STRING_LEN  # (d) truncated bound
        exact = vt != "string" or len(lo) < TRUNCATED_STRING_LEN and not open_max
        out = null_bits
        if op == "equal":
            if lo_v <= value and (open_max or value <= hi_v):
                out |= T
            if not (exact and lo_v == hi_v == value and vt != "timestamp"):
                out |= F
        elif op == "lessThan":
            if lo_v < value:
                out |= T
            if open_max or hi_v >= value:
                out |= F
        elif op == "lessThanOrEqual":
            if lo_v <= value:
                out |= T
            if open_max or hi_v > value:
                out |= F
        elif op == "greaterThan":
            if open_max or hi_v > value:
                out |= T
            if lo_v <= value:
                out |= F
        elif op == "greaterThanOrEqual":
            if open_max or hi_v >= value:
                out |= T
            if lo_v < value:
                out |= F
        return out or ALL


def _holds(op: str, a: Any, b: Any) -> bool:
    if op == "equal":
        return a == b
    if op == "lessThan":
        return a < b
    if op == "lessThanOrEqual":
        return a <= b
    if op == "greaterThan":
        return a > b
    return a >= b


def parse_json_predicate(hints: object) -> Predicate | None:
    """Parse and validate ``jsonPredicateHints`` (a JSON string, or an object for lenient clients).

    :returns: the predicate, or None when the hint is absent or malformed (then nothing is skipped).
    """
    if hints is None or hints == "":
        return None
    try:
        if isinstance(hints, str):
            if len(hints.encode()) > MAX_HINT_BYTES:
                raise _Malformed("hint larger than 1 MiB")
            tree = json.loads(hints)
        else:
            tree = hints
        return Predicate(tree)
    except (_Malformed, ValueError, TypeError, RecursionError) as exc:
        log.warning("ignoring malformed jsonPredicateHints: %s", exc)
        return None


def file_matches(predicate: Predicate | None, add: Mapping[str, Any]) -> bool:
    """Whether a file may hold rows matching ``predicate`` (True when unsure)."""
    if predicate is None:
        return True
    pv = add.get("partitionValues") or {}
    view = FileView({k.lower(): v for k, v in pv.items()}, parse_stats(add.get("stats")))
    try:
        return bool(predicate.outcomes(view) & T)
    except (ValueError, TypeError, KeyError, RecursionError):
        return True


def file_always_matches(predicate: Predicate, add: Mapping[str, Any]) -> bool:
    """Whether every row of a file provably satisfies ``predicate`` (False when unsure)."""
    pv = add.get("partitionValues") or {}
    view = FileView({k.lower(): v for k, v in pv.items()}, parse_stats(add.get("stats")))
    try:
        return predicate.outcomes(view) == T
    except (ValueError, TypeError, KeyError, RecursionError):
        return False


def apply_limit_hint(
    files: Iterable[dict[str, Any]],
    limit: int | None,
    counts: Callable[[dict[str, Any]], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield files in order until their ``numRecords`` add up to ``limit`` (files without stats count 0).

    With deletion vectors the DV cardinality is subtracted from ``numRecords``. ``counts(add)`` says
    whether a file's rows count towards the limit (with predicates: only files whose every row provably
    matches, so no file that could hold a matching row is dropped for rows that do not match).
    """
    if limit is None:
        yield from files
        return
    total = 0
    for add in files:
        if total >= limit:
            return
        yield add
        if counts is not None and not counts(add):
            continue
        stats = parse_stats(add.get("stats"))
        num = stats.get("numRecords") if stats else None
        if isinstance(num, int | float):
            dv = add.get("deletionVector") or {}
            total += int(num) - int(dv.get("cardinality") or 0)
