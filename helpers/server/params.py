"""Request parameters: parsing and validation of query strings, bodies and protocol headers.

Numbers may arrive as strings (the reference server accepts ``"3"``); the response format follows the
client's ``delta-sharing-capabilities`` header and what the table's reader features allow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request

from helpers.catalog import Recipient, SharedTable
from helpers.server.errors import bad_request
from helpers.storage.delta_log import Snapshot

__all__ = [
    "Params",
    "bool_param",
    "check_fileidhash",
    "choose_format",
    "echo_capabilities",
    "int_param",
    "parse_capabilities",
    "parse_json_body",
    "partition_predicate",
]

Params = Mapping[str, Any]
"""Request parameters: the query string (``str`` values) or a JSON body (any JSON values)."""

_UNSAFE_PARQUET_FEATURES = {
    "deletionvectors",
    "columnmapping",
    "timestampntz",
    "timestampntz-preview",
}


def bool_param(value: object, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    raise bad_request(f"{name} must be true or false, got {value!r}")


def int_param(value: object, name: str, *, minimum: int | None = None) -> int | None:
    """Coerce a number that may arrive as a string (the reference accepts ``"3"``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"{name} must be a number, got {value!r}", "MALFORMED_REQUEST")
    if isinstance(value, float):
        if not value.is_integer():
            raise bad_request(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise bad_request(f"{name} must be a number, got {value!r}") from None
    if not isinstance(value, int):
        raise bad_request(f"{name} must be a number, got {value!r}", "MALFORMED_REQUEST")
    if minimum is not None and value < minimum:
        raise bad_request(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_capabilities(header: str | None) -> dict[str, list[str]]:
    """``delta-sharing-capabilities: key=v1,v2;key2=v3`` as ``{key: [values]}`` (lower-cased)."""
    caps: dict[str, list[str]] = {}
    for part in (header or "").split(";"):
        key, sep, values = part.partition("=")
        key = key.strip().lower()
        if not key or not sep:
            continue
        caps[key] = [v.strip().lower() for v in values.split(",") if v.strip()]
    return caps


def echo_capabilities(headers: dict[str, str], caps: dict[str, list[str]]) -> dict[str, str]:
    """``headers`` with ``delta-sharing-capabilities`` cut to what the client asked about: the response
    format always, ``includeendstreamaction=true`` only when the request header asked for it (an
    endStreamAction sent because of ``maxFiles`` or a refresh token is not advertised)."""
    value = headers.get("delta-sharing-capabilities")
    if value is None:
        return headers
    asked = "true" in caps.get("includeendstreamaction", [])
    parts = [
        p for p in value.split(";") if asked or not p.strip().lower().startswith("includeendstream")
    ]
    return {**headers, "delta-sharing-capabilities": ";".join(parts)}


def check_fileidhash(request: Request) -> str | None:
    """The ``fileidhash`` header (``parquet`` | ``delta``, lower-cased) or None; a 400 for anything else."""
    fh = request.headers.get("fileidhash")
    if fh is not None and fh.strip().lower() not in ("parquet", "delta"):
        raise bad_request(f"fileidhash must be parquet or delta, got {fh!r}")
    return fh.strip().lower() if fh else None


MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a request body (a predicate tree is capped at 100 levels of *its* JSON
string; the body itself is flat)."""

_BODY_TYPES: dict[str, tuple[type, ...]] = {
    "pageToken": (str,),
    "refreshToken": (str,),
    "idempotencyKey": (str,),
    "timestamp": (str,),
    "predicateHints": (list,),
    "jsonPredicateHints": (str, dict),
    "includeRefreshToken": (bool, str),
    "includeHistoricalProtocol": (bool, str),
}
"""Expected JSON types of the ``/query`` body fields that are not numbers (numbers: :func:`int_param`)."""


def json_depth_exceeds(value: object, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) nests deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """A ``/query`` request body: a JSON object (empty body = ``{}``), else a 400 ``MALFORMED_REQUEST``.

    Nesting deeper than :data:`MAX_JSON_DEPTH` and fields of the wrong JSON type are refused the same way.
    """
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise bad_request(
            "The request body is not valid JSON (or nests too deeply)", "MALFORMED_REQUEST"
        ) from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object", "MALFORMED_REQUEST")
    if json_depth_exceeds(body, MAX_JSON_DEPTH):
        raise bad_request(
            f"The request body nests deeper than {MAX_JSON_DEPTH} levels", "MALFORMED_REQUEST"
        )
    for key, types in _BODY_TYPES.items():
        value = body.get(key)
        if value is not None and not isinstance(value, types):
            names = " or ".join(
                {str: "a string", list: "a list", dict: "an object", bool: "a boolean"}[t]
                for t in types
            )
            raise bad_request(
                f"{key} must be {names}, got {type(value).__name__}", "MALFORMED_REQUEST"
            )
    hints = body.get("predicateHints")
    if hints is not None and not all(isinstance(h, str) for h in hints):
        raise bad_request("predicateHints must be a list of strings", "MALFORMED_REQUEST")
    return body


def _table_reader_features(snapshot: Snapshot) -> set[str]:
    features = {f.lower() for f in snapshot.reader_features}
    config = snapshot.configuration
    if str(config.get("delta.columnMapping.mode", "none")).lower() not in ("none", ""):
        features.add("columnmapping")
    if str(config.get("delta.enableDeletionVectors", "")).lower() == "true" or any(
        f.get("deletionVector") for f in snapshot.files[:1000]
    ):
        features.add("deletionvectors")
    return features


def choose_format(caps: dict[str, list[str]], snapshot: Snapshot) -> str:
    """The response format per protocol §3, or a 400 when the table cannot be served that way."""
    asked = [f for f in caps.get("responseformat", []) if f in ("parquet", "delta")]
    unknown = [f for f in caps.get("responseformat", []) if f not in ("parquet", "delta")]
    if unknown and not asked:
        raise bad_request(
            f"Unsupported responseformat {','.join(unknown)}; use parquet or delta",
            "UNSUPPORTED_OPERATION",
        )
    if not asked:
        fmt = "parquet"
    elif len(set(asked)) == 1:
        fmt = asked[0]
    else:
        fmt = "parquet" if snapshot.min_reader_version == 1 else "delta"
    features = _table_reader_features(snapshot)
    if fmt == "parquet":
        blocking = sorted(features & _UNSAFE_PARQUET_FEATURES)
        if blocking:
            raise bad_request(
                f"This table uses the reader features {', '.join(blocking)}, which the parquet response "
                "format cannot express; read it in delta format (load_as_pandas(..., "
                "use_delta_format=True))",
                "UNSUPPORTED_OPERATION",
            )
    else:
        client = set(caps.get("readerfeatures", []))
        missing = sorted((features & _UNSAFE_PARQUET_FEATURES) - client)
        if missing:
            raise bad_request(
                f"This table needs the reader features {', '.join(missing)}, which the client did not "
                "declare in delta-sharing-capabilities readerfeatures",
                "UNSUPPORTED_OPERATION",
            )
    return fmt


def _pv_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def partition_predicate(
    table: SharedTable, recipient: Recipient | None
) -> Callable[[dict[str, Any]], bool] | None:
    """The recipient's partition filter on ``table`` (None = no filter). A missing property hides all."""
    clauses = tuple(getattr(table, "partition_filter", ()) or ())
    if not clauses:
        return None
    wanted: list[tuple[str, str]] = []
    for clause in clauses:
        value = clause.resolve(recipient)
        if value is None:
            return lambda add: False
        wanted.append((clause.column.lower(), _pv_text(value)))

    def allowed(add: dict[str, Any]) -> bool:
        pv = {k.lower(): v for k, v in (add.get("partitionValues") or {}).items()}
        return all(pv.get(col) == val for col, val in wanted)

    return allowed
