"""A lean table loader over the open protocol: one ``/query``, then the signed URLs fetched concurrently
and decoded with pyarrow.

The official ``delta_sharing`` client is what the lessons teach; it makes about 11 requests per file (HEADs,
footer reads, abandoned GETs). :func:`fast_load` makes one request for the file list and one GET per file,
on keep-alive connections kept between calls (a dashboard's next refresh reuses them), and starts each
download as soon as its line of the ``/query`` response arrives; each file is read into one buffer and
decoded there by pyarrow, and the pandas conversion happens once, at the end. It asks for either
response format (``delta,parquet``, readers features ``deletionvectors`` and ``timestampntz``), so a
server answers ``parquet`` for a plain table and ``delta`` for one with deletion vectors: then each file's
deletion vector (inline, or fetched with one range GET of its signed URL) is decoded
(:mod:`helpers.recipient.deletion_vectors`) and its rows are dropped from the file's rows. Partition
columns come from the file entries' ``partitionValues``, typed by the table's schema; columns of the
schema that no file holds are nulls. Column-mapped tables are not read (the server refuses them to it).

HTTP goes through :mod:`helpers.recipient.keepalive` (``http.client`` on kept connections, HTTPS verified
against the lab CA kept beside the profile or certifi's roots); its errors are those of ``requests``
(``HTTPError`` with the server's message, ``ConnectionError``), so a caller handles both loaders alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from helpers.recipient.deletion_vectors import bitmap_rows, framed_vector
from helpers.recipient.keepalive import request
from helpers.recipient.profile_files import load_profile
from helpers.z85 import z85_decode

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
    "timestamp_ntz": pa.timestamp("us"),
    "binary": pa.binary(),
}
_HEADERS = {"User-Agent": "sharelab-fast-loader"}
_CAPABILITIES = (
    "responseformat=delta,parquet;readerfeatures=deletionvectors,timestampntz;"
    "includeendstreamaction=true"
)


def _split(url: str) -> tuple[str, str, str, str]:
    profile, sep, name = url.rpartition("#")
    parts = name.split(".")
    if not sep or len(parts) != 3 or not all(parts):
        raise ValueError(f"table URL {url!r} must be <profile file>#<share>.<schema>.<table>")
    return profile, parts[0], parts[1], parts[2]


def _arrow_type(type_name: object) -> pa.DataType:
    if isinstance(type_name, str) and type_name.startswith("decimal("):
        precision, _, scale = type_name[8:-1].partition(",")
        return pa.decimal128(int(precision), int(scale or 0))
    return _TYPES.get(type_name, pa.string()) if isinstance(type_name, str) else pa.string()


def _partition_array(value: str | None, type_name: object, n: int) -> pa.Array:
    """``n`` copies of one partition value, typed by the schema (kept a string if it does not cast)."""
    arrow_type = _arrow_type(type_name)
    scalar = pa.scalar(value, type=pa.string())
    if arrow_type != pa.string():
        try:
            scalar = scalar.cast(arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return pa.repeat(scalar, n)


def _query_lines(
    endpoint: str, token: str, table_path: str, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The parsed lines of the ``/query`` answer, as they arrive (the downloads start meanwhile)."""
    headers = {
        **_HEADERS,
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "delta-sharing-capabilities": _CAPABILITIES,
    }
    url = f"{endpoint}/shares/{table_path}/query"
    while True:
        next_page = None
        with request(
            "POST", url, body=json.dumps(body).encode(), headers=headers, timeout=120
        ) as r:
            for line in r.lines():
                if not line.strip():
                    continue
                obj = json.loads(line)
                end = obj.get("endStreamAction")
                if end is None:
                    yield obj
                    continue
                if end.get("errorMessage"):
                    raise requests.HTTPError(
                        f"the server stopped the file list: {end['errorMessage']}"
                    )
                next_page = end.get("nextPageToken")
        if not next_page:
            return
        body = {**body, "pageToken": next_page}


def _read_file(entry: dict[str, Any], threads: bool) -> pa.Table:
    """A file entry's rows: its download, less the rows its deletion vector marks deleted."""
    data = _download(entry["url"], _size(entry), threads)
    dv = entry.get("deletionVector")
    if not dv:
        return data
    deleted = _deleted_rows(dv)
    if len(deleted) and int(deleted[-1]) >= data.num_rows:
        raise ValueError(
            f"the deletion vector of {entry['url'].split('?', 1)[0]} marks row {int(deleted[-1])} of "
            f"a file of {data.num_rows} rows; load again (the table may have changed)"
        )
    keep = np.ones(data.num_rows, dtype=bool)
    keep[deleted.astype(np.int64)] = False
    return data.filter(pa.array(keep))


def _deleted_rows(dv: dict[str, Any]) -> np.ndarray:
    """The row positions a deletion vector descriptor marks deleted (inline, or behind a signed URL)."""
    kind, ref = dv.get("storageType"), str(dv.get("pathOrInlineDv") or "")
    size = int(dv.get("sizeInBytes") or 0)
    if kind == "i":
        vector = z85_decode(ref)
    elif kind == "p" and ref.startswith(("http://", "https://")):
        start = int(dv.get("offset") or 0)
        where = ref.split("?", 1)[0]
        headers = dict(_HEADERS, Range=f"bytes={start}-{start + size + 7}")
        with request("GET", ref, headers=headers) as reply:
            blob = reply.body(where)
        if reply.resp.status == 200:  # a server that ignores ranges: the whole file
            blob = blob[start:]
        vector = framed_vector(blob, size)
    else:
        raise ValueError(
            f"the server gave a deletion vector a recipient cannot read (storage type {kind!r} at "
            f"{ref[:80]!r}); a Delta Sharing server sends a signed URL (type 'p') or an inline one"
        )
    rows = bitmap_rows(vector)
    cardinality = dv.get("cardinality")
    if isinstance(cardinality, int) and cardinality != len(rows):
        raise ValueError(
            f"a deletion vector holds {len(rows)} rows, its descriptor says {cardinality}"
        )
    return rows


def _file_entry(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A ``file`` line's entry as the parquet format has it (url, size, stats, partition values,
    and a ``deletionVector`` in the delta format); None for a delta line without an ``add``."""
    entry: dict[str, Any] = obj["file"]
    action = entry.get("deltaSingleAction")
    if action is None:
        return entry
    add = action.get("add")
    if add is None:
        return None
    return {**add, "url": add["path"]}


def _download(url: str, size: int | None = None, threads: bool = False) -> pa.Table:
    """One GET into one buffer, decoded in place.

    With the size from the file list, the GET asks for exactly those bytes (``Range: bytes=0-<size-1>``):
    the same answer, but a server may serve a range it can read in one call cheaper than a stream (this
    project's server: about half the CPU for a small file). A server that ignores ranges answers 200
    with the whole file, which is as good; a 206 of other bytes is an error.
    """
    where = url.split("?", 1)[0]
    whole = f"bytes 0-{size - 1}/{size}" if size else None
    headers = dict(_HEADERS, Range=f"bytes=0-{size - 1}") if size else _HEADERS
    with request("GET", url, headers=headers) as reply:
        if reply.resp.status == 206 and reply.resp.getheader("Content-Range") != whole:
            raise requests.HTTPError(
                f"{where} answered a range of {reply.resp.getheader('Content-Range')} for the "
                f"{size} bytes the file list gave; load again (the table may have changed)"
            )
        data = reply.body(where)
    # ParquetFile, not read_table: no dataset layer (~1 ms a file). pyarrow's own threads only when
    # the files are fewer than the cores: else the files' threads keep them busy already.
    return pq.ParquetFile(pa.BufferReader(pa.py_buffer(data))).read(use_threads=threads)


def _size(entry: dict[str, Any]) -> int | None:
    size = entry.get("size")
    return size if isinstance(size, int) and size > 0 else None


class _Plan:
    """What the metadata line says about the files to come: schema, partition columns."""

    def __init__(self, line: dict[str, Any]) -> None:
        # the delta format nests the Delta metaData action (numFiles stays outside)
        metadata = {**line, **(line.get("deltaMetadata") or {})}
        schema = json.loads(metadata.get("schemaString") or '{"fields": []}')
        self.fields: list[dict[str, Any]] = list(schema.get("fields", []))
        self.types = {f["name"]: f.get("type") for f in self.fields}
        self.partitions = list(metadata.get("partitionColumns") or [])
        files = metadata.get("numFiles")
        self.threads = isinstance(files, int) and files < (os.cpu_count() or 1)

    def decorate(self, data: pa.Table, values: dict[str, Any]) -> pa.Table:
        for col in self.partitions:
            if col not in data.column_names:
                array = _partition_array(values.get(col), self.types.get(col), data.num_rows)
                data = data.append_column(col, array)
        return data

    def finish(self, parts: list[pa.Table], limit: int | None) -> pa.Table:
        if not parts:
            return pa.table(
                {f["name"]: pa.array([], type=_arrow_type(f.get("type"))) for f in self.fields}
            )
        result = (
            parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")
        )
        if limit is not None:
            result = result.slice(0, limit)
        for f in self.fields:  # a column added by a later commit that no file of this read holds
            if f["name"] not in result.column_names:
                null = pa.nulls(result.num_rows, type=_arrow_type(f.get("type")))
                result = result.append_column(f["name"], null)
        order = [f["name"] for f in self.fields if f["name"] in result.column_names]
        return result.select(order) if order else result


def _rows(entry: dict[str, Any]) -> int | None:
    try:
        return int(json.loads(entry.get("stats") or "{}")["numRecords"])
    except (ValueError, KeyError, TypeError):
        return None


def fast_load_arrow(
    url: str,
    *,
    version: int | None = None,
    limit: int | None = None,
    json_predicate_hints: str | dict[str, Any] | None = None,
    max_workers: int = 8,
) -> pa.Table:
    """The table ``<profile>#<share>.<schema>.<table>`` as a :class:`pyarrow.Table` (see the module).

    :param version: read this table version (default: the latest).
    :param limit: at most this many rows (sent as ``limitHint``; files are read in order only until the
        files' row counts cover it, as the official client does).
    :param json_predicate_hints: a ``jsonPredicateHints`` tree (JSON text or a dict) for the server to
        skip files with; a hint, not a filter: the rows of the files it keeps are all returned.
    :param max_workers: concurrent downloads.
    """
    path, share, schema, table = _split(url)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int, got {limit!r}")
    profile = load_profile(path)
    body: dict[str, Any] = {}
    if version is not None:
        body["version"] = int(version)
    if limit is not None:
        body["limitHint"] = limit
    if json_predicate_hints is not None:
        hints = json_predicate_hints
        body["jsonPredicateHints"] = hints if isinstance(hints, str) else json.dumps(hints)
    lines = _query_lines(
        str(profile.endpoint).rstrip("/"),
        str(profile.bearer_token),
        f"{share}/schemas/{schema}/tables/{table}",
        body,
    )
    return _fetch_all(lines, limit, max(1, max_workers))


def _fetch_all(lines: Iterator[dict[str, Any]], limit: int | None, workers: int) -> pa.Table:
    plan = _Plan({})
    futures: list[tuple[Future[pa.Table], dict[str, Any]]] = []
    wanted = limit
    with ThreadPoolExecutor(workers, thread_name_prefix="sharelab-fast") as pool:
        try:
            for obj in lines:
                if "metaData" in obj:
                    plan = _Plan(obj["metaData"])
                elif "file" in obj and (wanted is None or wanted > 0):
                    entry = _file_entry(obj)
                    if entry is None:
                        continue
                    futures.append((pool.submit(_read_file, entry, plan.threads), entry))
                    if wanted is not None:  # a file without stats counts 0: the cut comes after
                        deleted = (entry.get("deletionVector") or {}).get("cardinality") or 0
                        wanted -= (_rows(entry) or 0) - deleted
        except BaseException:
            for future, _entry in futures:
                future.cancel()
            raise
        parts = [plan.decorate(f.result(), e.get("partitionValues") or {}) for f, e in futures]
    return plan.finish(parts, limit)


def fast_load(url: str, **kwargs: Any) -> pd.DataFrame:
    """:func:`fast_load_arrow` as a pandas DataFrame (same arguments), converted once at the end."""
    table = fast_load_arrow(url, **kwargs)
    # ours alone: arrow's buffers are freed as pandas copies them (less peak memory). Not split_blocks:
    # its zero-copy columns are read-only, and a caller may assign into the frame.
    return table.to_pandas(self_destruct=True)
