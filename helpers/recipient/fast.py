"""A lean table loader over the open protocol: one ``/query``, then the signed URLs fetched concurrently
and decoded with pyarrow.

The official ``delta_sharing`` client is what the lessons teach; it makes about 11 requests per file (HEADs,
footer reads, abandoned GETs). :func:`fast_load` makes one request for the file list and one GET per file,
on a few keep-alive connections, and decodes each file as it arrives: for dashboards and mounts where the
load time matters. It reads snapshots in the ``parquet`` response format (no deletion vectors); partition
columns come from the file entries' ``partitionValues``, typed by the table's schema.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from helpers.recipient.profile_files import load_profile

__all__ = ["fast_load", "fast_load_arrow"]

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "short": pa.int16(),
    "byte": pa.int8(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def _split(url: str) -> tuple[str, str, str, str]:
    profile, sep, name = url.rpartition("#")
    parts = name.split(".")
    if not sep or len(parts) != 3 or not all(parts):
        raise ValueError(f"table URL {url!r} must be <profile file>#<share>.<schema>.<table>")
    return profile, parts[0], parts[1], parts[2]


def _partition_array(value: str | None, type_name: str, n: int) -> pa.Array:
    arrow_type = _TYPES.get(type_name, pa.string())
    raw = pa.array([value] * n, type=pa.string())
    if arrow_type == pa.string():
        return raw
    try:
        return raw.cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return raw


def _query(
    session: requests.Session,
    endpoint: str,
    share: str,
    schema: str,
    table: str,
    body: dict[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    resp = session.post(
        f"{endpoint}/shares/{share}/schemas/{schema}/tables/{table}/query",
        json=body,
        headers={"delta-sharing-capabilities": "responseformat=parquet"},
        timeout=120,
    )
    if not resp.ok:  # the server's own one-line message, not just the status
        try:
            message = resp.json().get("message") or resp.text
        except ValueError:
            message = resp.text
        raise requests.HTTPError(f"{resp.status_code} from {resp.url}: {message}", response=resp)
    metadata: dict[str, Any] = {}
    files: list[dict[str, Any]] = []
    for line in resp.text.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if "metaData" in obj:
            metadata = obj["metaData"]
        elif "file" in obj:
            files.append(obj["file"])
    return metadata, files


def fast_load_arrow(
    url: str,
    *,
    version: int | None = None,
    limit: int | None = None,
    max_workers: int = 8,
) -> pa.Table:
    """The table ``<profile>#<share>.<schema>.<table>`` as a :class:`pyarrow.Table` (see the module).

    :param version: read this table version (default: the latest).
    :param limit: a ``limitHint`` for the server (the result may hold more rows).
    :param max_workers: concurrent downloads.
    """
    path, share, schema, table = _split(url)
    profile = load_profile(path)
    endpoint = str(profile.endpoint).rstrip("/")
    local = threading.local()

    def session() -> requests.Session:
        s: requests.Session | None = getattr(local, "session", None)
        if s is None:
            s = requests.Session()
            local.session = s
        return s

    main = requests.Session()
    main.headers["Authorization"] = f"Bearer {profile.bearer_token}"
    main.headers["User-Agent"] = "sharelab-fast-loader"
    body: dict[str, Any] = {}
    if version is not None:
        body["version"] = int(version)
    if limit is not None:
        body["limitHint"] = int(limit)
    metadata, files = _query(main, endpoint, share, schema, table, body)
    fields = json.loads(metadata.get("schemaString") or '{"fields": []}').get("fields", [])
    types = {f["name"]: f["type"] if isinstance(f["type"], str) else "string" for f in fields}
    partitions = list(metadata.get("partitionColumns") or [])

    def fetch(entry: dict[str, Any]) -> pa.Table:
        resp = session().get(entry["url"], timeout=300)
        resp.raise_for_status()
        data = pq.read_table(io.BytesIO(resp.content))
        values = entry.get("partitionValues") or {}
        for col in partitions:
            if col not in data.column_names:
                data = data.append_column(
                    col, _partition_array(values.get(col), types.get(col, "string"), data.num_rows)
                )
        return data

    workers = max(1, min(max_workers, len(files), (os.cpu_count() or 2) * 4))
    if not files:
        return _empty(fields)
    with ThreadPoolExecutor(workers) as pool:
        parts: Iterable[pa.Table] = list(pool.map(fetch, files))
    result = pa.concat_tables(parts, promote_options="permissive")
    order = [f["name"] for f in fields if f["name"] in result.column_names]
    return result.select(order) if order else result


def _empty(fields: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            f["name"]: pa.array(
                [], type=_TYPES.get(f["type"] if isinstance(f["type"], str) else "", pa.string())
            )
            for f in fields
        }
    )


def fast_load(url: str, **kwargs: Any) -> pd.DataFrame:
    """:func:`fast_load_arrow` as a pandas DataFrame (same arguments)."""
    return fast_load_arrow(url, **kwargs).to_pandas()
