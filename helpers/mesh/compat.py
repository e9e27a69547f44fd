"""Schema compatibility between a published Delta schema and the current one, classified as schema
registries do: BACKWARD (new readers read old data), FORWARD (old readers read new data), FULL or NONE."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from helpers.exceptions import InvalidArgumentError
from helpers.mesh.common import COMPATIBILITY_MODES

_INT_RANK = {"byte": 0, "short": 1, "integer": 2, "long": 3}
_INT_DIGITS = {"byte": 3, "short": 5, "integer": 10, "long": 20}
_DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def _widens(old: str, new: str) -> bool:
    """Whether every value of Delta primitive type ``old`` is representable in ``new`` (type widening)."""
    if old == new:
        return True
    if old in _INT_RANK and new in _INT_RANK:
        return _INT_RANK[old] < _INT_RANK[new]
    if old == "float" and new == "double":
        return True
    if old in ("byte", "short", "integer") and new == "double":
        return True  # Delta type widening allows these (a long does not fit a double's mantissa)
    if old == "date" and new in ("timestamp_ntz", "timestamp"):
        return True
    new_dec = _DECIMAL_RE.match(new)
    if new_dec:
        p2, s2 = int(new_dec.group(1)), int(new_dec.group(2))
        old_dec = _DECIMAL_RE.match(old)
        if old_dec:
            p1, s1 = int(old_dec.group(1)), int(old_dec.group(2))
            return s2 >= s1 and (p2 - s2) >= (p1 - s1)
        if old in _INT_DIGITS:
            return p2 - s2 >= _INT_DIGITS[old]
    return False


def type_text(t: Any) -> str:
    """A Delta type (a name or a nested JSON type) as one line of text."""
    if isinstance(t, str):
        return t
    kind = t.get("type")
    if kind == "array":
        return f"array<{type_text(t['elementType'])}>"
    if kind == "map":
        return f"map<{type_text(t['keyType'])},{type_text(t['valueType'])}>"
    if kind == "struct":
        return (
            "struct<" + ",".join(f"{f['name']}:{type_text(f['type'])}" for f in t["fields"]) + ">"
        )
    return json.dumps(t)


@dataclass(frozen=True)
class SchemaChange:
    """One difference between a published schema and the current one.

    ``backward``: a reader with the new schema can read data written with the old one.
    ``forward``: a reader with the old schema (an existing consumer) can read data written with the new one.
    """

    path: str
    kind: str
    old: str | None
    new: str | None
    backward: bool
    forward: bool

    def describe(self) -> str:
        verdict = _level(self.backward, self.forward)
        return f"{self.kind} {self.path} ({self.old or '-'} -> {self.new or '-'}): {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "old": self.old,
            "new": self.new,
            "backward": self.backward,
            "forward": self.forward,
        }


def _level(backward: bool, forward: bool) -> str:
    if backward and forward:
        return "FULL"
    if backward:
        return "BACKWARD"
    if forward:
        return "FORWARD"
    return "NONE"


@dataclass(frozen=True)
class CompatibilityResult:
    """Compatibility of a table's current schema with its published schema.

    ``level`` is the strongest class that holds: FULL (both directions), BACKWARD, FORWARD or NONE.
    """

    table: str
    changes: tuple[SchemaChange, ...]

    @property
    def backward(self) -> bool:
        return all(c.backward for c in self.changes)

    @property
    def forward(self) -> bool:
        return all(c.forward for c in self.changes)

    @property
    def full(self) -> bool:
        return self.backward and self.forward

    @property
    def level(self) -> str:
        return _level(self.backward, self.forward)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def compatible(self, mode: str) -> bool:
        """Whether the change satisfies the contract ``mode`` (BACKWARD, FORWARD, FULL, NONE)."""
        mode = mode.upper()
        if mode == "NONE":
            return True
        if mode == "BACKWARD":
            return self.backward
        if mode == "FORWARD":
            return self.forward
        if mode == "FULL":
            return self.full
        raise InvalidArgumentError(
            f"unknown compatibility mode {mode!r}; use {COMPATIBILITY_MODES}"
        )

    def breaking(self, mode: str = "FULL") -> tuple[SchemaChange, ...]:
        """The changes that violate ``mode``."""
        mode = mode.upper()
        return tuple(
            c
            for c in self.changes
            if (mode in ("BACKWARD", "FULL") and not c.backward)
            or (mode in ("FORWARD", "FULL") and not c.forward)
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [dict(table=self.table, **c.to_dict()) for c in self.changes],
            columns=["table", "path", "kind", "old", "new", "backward", "forward"],
        )


def _compare_type(path: str, old: Any, new: Any, out: list[SchemaChange]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and old.get("type") == new.get("type"):
        kind = old["type"]
        if kind == "struct":
            _compare_fields(path + ".", old["fields"], new["fields"], out)
            return
        if kind == "array":
            _compare_type(path + "[]", old["elementType"], new["elementType"], out)
            _compare_nullability(path + "[]", old["containsNull"], new["containsNull"], out)
            return
        if kind == "map":
            _compare_type(path + "{key}", old["keyType"], new["keyType"], out)
            _compare_type(path + "{value}", old["valueType"], new["valueType"], out)
            _compare_nullability(
                path + "{value}", old["valueContainsNull"], new["valueContainsNull"], out
            )
            return
    old_t, new_t = type_text(old), type_text(new)
    if isinstance(old, str) and isinstance(new, str) and _widens(old, new):
        out.append(SchemaChange(path, "widen_type", old_t, new_t, backward=True, forward=False))
    elif isinstance(old, str) and isinstance(new, str) and _widens(new, old):
        out.append(SchemaChange(path, "narrow_type", old_t, new_t, backward=False, forward=True))
    else:
        out.append(SchemaChange(path, "change_type", old_t, new_t, backward=False, forward=False))


def _compare_nullability(path: str, old: bool, new: bool, out: list[SchemaChange]) -> None:
    if old == new:
        return
    if old and not new:  # new readers refuse the nulls old data may hold
        out.append(SchemaChange(path, "make_required", "nullable", "not null", False, True))
    else:  # old readers do not expect nulls
        out.append(SchemaChange(path, "make_nullable", "not null", "nullable", True, False))


def _compare_fields(
    prefix: str, old_fields: list[dict], new_fields: list[dict], out: list[SchemaChange]
) -> None:
    old_by = {f["name"].lower(): f for f in old_fields}
    new_by = {f["name"].lower(): f for f in new_fields}
    for key, f in old_by.items():
        if key not in new_by:
            # Delta columns have no defaults: an existing consumer's query naming the column fails, so a
            # drop is never forward compatible; a new reader simply ignores the old column (backward).
            out.append(
                SchemaChange(
                    prefix + f["name"], "drop_column", type_text(f["type"]), None, True, False
                )
            )
    for key, f in new_by.items():
        if key not in old_by:
            nullable = bool(f.get("nullable", True))
            out.append(
                SchemaChange(
                    prefix + f["name"],
                    "add_column" if nullable else "add_required_column",
                    None,
                    type_text(f["type"]) + ("" if nullable else " not null"),
                    backward=nullable,  # old rows read as null only if the column may be null
                    forward=True,  # an old reader ignores a column it does not know
                )
            )
            continue
        o = old_by[key]
        _compare_type(prefix + f["name"], o["type"], f["type"], out)
        _compare_nullability(
            prefix + f["name"], bool(o.get("nullable", True)), bool(f.get("nullable", True)), out
        )


def compare_schemas(
    old: Mapping[str, Any] | Any, new: Mapping[str, Any] | Any, table: str = ""
) -> CompatibilityResult:
    """Compare two Delta schemas (JSON dicts as in the Delta log, ``deltalake.Schema`` or pyarrow schemas).

    Classes as schema registries define them: BACKWARD = readers of the new schema read old data; FORWARD =
    readers of the old schema read new data; FULL = both. An added nullable column is FULL; an added
    NOT NULL column is FORWARD only; a dropped column and a widened type are BACKWARD only; a narrowed type
    is FORWARD only; an unrelated type change is NONE.
    """
    old_s, new_s = _schema_dict(old), _schema_dict(new)
    changes: list[SchemaChange] = []
    _compare_fields("", old_s["fields"], new_s["fields"], changes)
    return CompatibilityResult(table, tuple(changes))


def _schema_dict(schema: Any) -> dict[str, Any]:
    if isinstance(schema, Mapping):
        return dict(schema)
    if hasattr(schema, "to_json"):
        return json.loads(schema.to_json())
    try:  # a pyarrow schema
        from deltalake import Schema

        return json.loads(Schema.from_arrow(schema).to_json())
    except Exception as exc:
        raise InvalidArgumentError(
            f"cannot read a schema from {type(schema).__name__}; pass a Delta JSON schema dict, a "
            "deltalake.Schema or a pyarrow.Schema"
        ) from exc
