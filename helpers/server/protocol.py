"""Wire types of the Delta Sharing protocol and their compact JSON / NDJSON encoding.

Frozen dataclasses, one per wire object, each with ``to_json()`` returning the dict sent on the wire
(optional fields left out when unset). Lines are encoded compactly on a single line (the official client
reads list responses with ``json.loads(next(response.iter_lines()))``).

File lines are hot (a 10,000-file table is 10,000 lines per ``/query``), so :class:`FileLineTemplate`
pre-encodes everything but the signed URL and its expiry once per (file, format); the server keeps the
templates of unchanged files across table versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EndStreamAction",
    "FileLineTemplate",
    "MetadataLine",
    "ProtocolLine",
    "ShareItem",
    "SchemaItem",
    "TableItem",
    "dumps",
    "ndjson",
]

_escape = json.encoder.encode_basestring_ascii  # what json.dumps uses for strings (ensure_ascii)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(obj: object) -> str:
    """Compact single-line JSON."""
    return _ENCODER.encode(obj)


def ndjson(obj: object) -> str:
    """One NDJSON line (compact JSON + ``\\n``)."""
    return _ENCODER.encode(obj) + "\n"


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class ShareItem:
    """An item of ``GET /shares`` and the body of ``GET /shares/{share}``."""

    name: str
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"name": self.name, "id": self.id})


@dataclass(frozen=True)
class SchemaItem:
    """An item of ``GET /shares/{share}/schemas``."""

    name: str
    share: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "share": self.share}


@dataclass(frozen=True)
class TableItem:
    """An item of the table listings."""

    name: str
    schema: str
    share: str
    id: str | None = None
    share_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "name": self.name,
                "schema": self.schema,
                "share": self.share,
                "shareId": self.share_id,
                "id": self.id,
            }
        )


def list_page(items: list[Any], next_page_token: str | None) -> dict[str, Any]:
    """The ``{"items": [...], "nextPageToken": ...}`` body of a list endpoint."""
    body: dict[str, Any] = {"items": [item.to_json() for item in items]}
    if next_page_token:
        body["nextPageToken"] = next_page_token
    return body


@dataclass(frozen=True)
class ProtocolLine:
    """The first line of ``/metadata``, ``/query`` and ``/changes``.

    :param fmt: ``parquet`` or ``delta``.
    :param delta_protocol: the raw Delta protocol action (delta format only).
    """

    fmt: str
    delta_protocol: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        if self.fmt == "parquet":
            return {"protocol": {"minReaderVersion": 1}}
        p = self.delta_protocol
        body: dict[str, Any] = {
            "minReaderVersion": int(p.get("minReaderVersion") or 1),
            "minWriterVersion": int(p.get("minWriterVersion") or 2),
        }
        if p.get("readerFeatures") is not None:
            body["readerFeatures"] = list(p["readerFeatures"])
        if p.get("writerFeatures") is not None:
            body["writerFeatures"] = list(p["writerFeatures"])
        return {"protocol": {"deltaProtocol": body}}


def _clean_schema_string(schema_string: str) -> str:
    """Keep only each field's ``comment`` in the schema metadata (like the reference server)."""
    try:
        schema = json.loads(schema_string)
    except ValueError:
        return schema_string

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "metadata" and isinstance(v, dict) and "name" in node:
                    out[k] = {"comment": v["comment"]} if "comment" in v else {}
                else:
                    out[k] = clean(v)
            return out
        if isinstance(node, list):
            return [clean(x) for x in node]
        return node

    return dumps(clean(schema))


@dataclass(frozen=True)
class MetadataLine:
    """The ``metaData`` line.

    :param fmt: ``parquet`` or ``delta``.
    :param metadata: the raw Delta ``metaData`` action.
    :param configuration: the configuration to report in parquet format.
    :param version: the version described (time travel, CDF, streaming), or None.
    :param size: total bytes of the active files.
    :param num_files: number of active files.
    """

    fmt: str
    metadata: dict[str, Any]
    configuration: dict[str, str]
    version: int | None = None
    size: int | None = None
    num_files: int | None = None

    def to_json(self) -> dict[str, Any]:
        md = self.metadata
        if self.fmt == "parquet":
            body: dict[str, Any] = {
                "id": md.get("id"),
                "name": md.get("name"),
                "description": md.get("description"),
                "format": {"provider": (md.get("format") or {}).get("provider", "parquet")},
                "schemaString": _clean_schema_string(md.get("schemaString") or ""),
                "partitionColumns": list(md.get("partitionColumns") or []),
                "configuration": self.configuration,
                "version": self.version,
                "size": self.size,
                "numFiles": self.num_files,
            }
            return {"metaData": _drop_none(body)}
        delta_md = {
            "id": md.get("id"),
            "name": md.get("name"),
            "description": md.get("description"),
            "format": {
                "provider": (md.get("format") or {}).get("provider", "parquet"),
                "options": dict((md.get("format") or {}).get("options") or {}),
            },
            "schemaString": md.get("schemaString"),
            "partitionColumns": list(md.get("partitionColumns") or []),
            "configuration": dict(md.get("configuration") or {}),
            "createdTime": md.get("createdTime"),
        }
        body = {
            "version": self.version,
            "size": self.size,
            "numFiles": self.num_files,
            "deltaMetadata": _drop_none(delta_md),
        }
        return {"metaData": _drop_none(body)}


@dataclass(frozen=True)
class EndStreamAction:
    """The last line, only when the client asked for it (capability or ``maxFiles``/refresh token)."""

    refresh_token: str | None = None
    next_page_token: str | None = None
    min_url_expiration_timestamp: int | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "endStreamAction": _drop_none(
                {
                    "refreshToken": self.refresh_token,
                    "nextPageToken": self.next_page_token,
                    "minUrlExpirationTimestamp": self.min_url_expiration_timestamp,
                    "errorMessage": self.error_message,
                }
            )
        }


def _dumps_values(values: dict[str, Any]) -> str:
    """``json.dumps(values)`` (default separators, ASCII), hand-made for the usual partition values map.

    ``json.dumps`` of a dict sets up a new encoder per call; a map of strings (or nulls) is encoded here
    with the same C string escaper, byte for byte the same text. Anything else goes to ``json.dumps``.
    """
    parts = []
    for k, v in values.items():
        if type(k) is not str:
            return json.dumps(values)
        if type(v) is str:
            parts.append(f"{_escape(k)}: {_escape(v)}")
        elif v is None:
            parts.append(f"{_escape(k)}: null")
        else:
            return json.dumps(values)
    return "{" + ", ".join(parts) + "}"


def file_id(path: str, fmt: str) -> str:
    """A stable file id: md5 of the log path in parquet format, sha256 in delta format (as the reference)."""
    digest = hashlib.sha256 if fmt == "delta" else hashlib.md5
    return digest(path.encode()).hexdigest()


@dataclass(frozen=True)
class FileLineTemplate:
    """A file line with two holes, the signed URL and its expiry, filled by :meth:`render`.

    :param prefix: JSON text before the URL.
    :param middle: JSON text between the URL and the expiry.
    :param suffix: JSON text after the expiry (closes the objects and ends the line).
    """

    prefix: str
    middle: str
    suffix: str
    url_first: bool = True

    def render(self, url: str, expires_ms: int) -> str:
        if self.url_first:
            return f"{self.prefix}{dumps(url)}{self.middle}{expires_ms}{self.suffix}"
        return f"{self.prefix}{expires_ms}{self.middle}{dumps(url)}{self.suffix}"

    @classmethod
    def build(
        cls,
        kind: str,
        fmt: str,
        action: dict[str, Any],
        *,
        version: int | None = None,
        timestamp: int | None = None,
        include_stats: bool = True,
    ) -> FileLineTemplate:
        """Pre-encode a ``file``/``add``/``cdf``/``remove`` line for ``action`` (a raw Delta action).

        :param kind: ``file`` (snapshot), ``add``, ``cdf`` or ``remove`` (CDF and streaming).
        :param fmt: ``parquet`` or ``delta``.
        :param version: set on time travel / CDF lines.
        :param timestamp: set with ``version``.
        """
        path = action["path"]
        if fmt == "parquet":  # hot path: plain concatenation, the C encoder for the variable parts
            parts = [
                ',"id":"',
                file_id(path, fmt),
                '","partitionValues":',
                _dumps_values(action.get("partitionValues") or {}),
                ',"size":',
                str(int(action.get("size") or 0)),
            ]
            stats = action.get("stats") if include_stats and kind in ("file", "add") else None
            if stats is not None:  # a JSON string in the log: escaped as json.dumps would
                parts += [',"stats":', _escape(stats) if type(stats) is str else json.dumps(stats)]
            if version is not None:
                parts += [',"version":', str(int(version))]
            if timestamp is not None:
                parts += [',"timestamp":', str(int(timestamp))]
            parts.append(',"expirationTimestamp":')
            return cls('{"' + kind + '":{"url":', "".join(parts), "}}\n", True)
        marker_url = "\x00URL\x00"
        marker_exp = -987654321987
        if fmt == "parquet":
            body: dict[str, Any] = {
                "url": marker_url,
                "id": file_id(path, fmt),
                "partitionValues": dict(action.get("partitionValues") or {}),
                "size": int(action.get("size") or 0),
            }
            if include_stats and kind in ("file", "add") and action.get("stats") is not None:
                body["stats"] = action["stats"]
            if version is not None:
                body["version"] = version
            if timestamp is not None:
                body["timestamp"] = timestamp
            body["expirationTimestamp"] = marker_exp
            obj = {kind: body}
        else:
            delta_kind = {"file": "add", "cdf": "cdc"}.get(kind, kind)
            raw = {k: v for k, v in action.items() if v is not None}
            raw["path"] = marker_url
            if delta_kind == "add":
                raw.setdefault("modificationTime", 0)
                raw.setdefault("dataChange", True)
            if delta_kind in ("remove", "cdc"):
                raw.setdefault("dataChange", delta_kind == "remove")
            raw.setdefault("partitionValues", {})
            raw.setdefault("size", 0)
            body = {"id": file_id(path, fmt)}
            if version is not None:
                body["version"] = version
            if timestamp is not None:
                body["timestamp"] = timestamp
            body["expirationTimestamp"] = marker_exp
            body["deltaSingleAction"] = {delta_kind: raw}
            obj = {"file": body}
        text = dumps(obj)
        url_json = dumps(marker_url)
        exp_text = str(marker_exp)
        url_first = text.index(url_json) < text.index(exp_text)
        first, second = (url_json, exp_text) if url_first else (exp_text, url_json)
        pre, _, rest = text.partition(first)
        mid, _, post = rest.partition(second)
        return cls(pre, mid, post + "\n", url_first)
