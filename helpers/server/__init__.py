"""The Delta Sharing protocol server: a Starlette app over the provider catalog, and its lifecycle.

Routes (``prefix`` defaults to ``/delta-sharing``; see ``docs/design.md`` "Server"):

- ``GET /health``: ``{"status": "ok", "version": ...}``;
- the protocol: ``{prefix}/shares[/{share}[/schemas[/{schema}/tables[/{table}[/version|/metadata|/query|/changes]]]]]``,
  ``{prefix}/shares/{share}/all-tables`` and the legacy ``HEAD .../tables/{table}``;
- ``GET|HEAD {prefix}/files/{token}?exp=..&X-Amz-Signature=..``: self-authorising, expiring downloads of one
  file of one table version (Range / 206 supported);
- ``GET {prefix}/activation/{code}``: the one-time activation link; returns the v1 profile JSON once.

Every protocol route needs ``Authorization: Bearer <token>`` (checked by :meth:`Catalog.authenticate`); a
share that is not granted to the caller answers exactly like a share that does not exist. Per-recipient
partition filters are applied before any URL is minted. Every request is audited through a background
writer thread (batched inserts; flushed on shutdown).

The Delta log is read by :mod:`helpers.storage.delta_log` (cached per table version), hints by
:mod:`helpers.server.predicates`, lines encoded by :mod:`helpers.server.protocol` (the encoded file lines of unchanged
files are reused across table versions; only the version-scoped URL signatures are made again), URLs and
tokens signed by :mod:`helpers.server.signing`.

Tables on S3-compatible object storage (``s3://bucket/prefix``) are read through the store (settings from
the server's environment, see :mod:`helpers.storage.s3`) and their files are handed out as the store's own
pre-signed GET URLs (SigV4), whose ``expirationTimestamp`` is the URL's expiry; the download route never
serves them. Other object stores (``gs://``, ``abfss://``...) answer 400 ``UNSUPPORTED_OPERATION``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from helpers import __version__
from helpers.exceptions import (
    InvalidArgumentError,
    InvalidNameError,
    NotADeltaTableError,
    NotFoundError,
    ServerError,
    SharelabError,
    TokenError,
)
from helpers.server.predicates import apply_limit_hint, file_matches, parse_json_predicate
from helpers.server.protocol import (
    EndStreamAction,
    FileLineTemplate,
    MetadataLine,
    ProtocolLine,
    SchemaItem,
    ShareItem,
    TableItem,
    dumps,
    list_page,
    ndjson,
)
from helpers.server.signing import FileRef, Signer, load_or_create_key, params_checksum
from helpers.storage.delta_log import (
    DeltaLog,
    DeltaLogError,
    ObjectStoreDeltaLog,
    Snapshot,
    get_log,
    parse_timestamp,
)
from helpers.storage.s3 import MAX_EXPIRES_SECONDS, is_s3, presign_get

__all__ = ["create_app", "register_cli", "serve", "start", "status", "stop"]

log = logging.getLogger("sharelab.server")

DEFAULT_PREFIX = "/delta-sharing"
DEFAULT_PORT = 8080
DEFAULT_URL_TTL_SECONDS = 3600
MAX_LIST_RESULTS = 500
MAX_FILES_PER_PAGE = 10_000
PAGE_TOKEN_TTL_SECONDS = 3 * 24 * 3600
REFRESH_TOKEN_TTL_SECONDS = 3600
NDJSON = "application/x-ndjson; charset=utf-8"
_CHUNK_BYTES = 256 * 1024
_EXPIRY_STEP_MS = 60_000
_WARM_MIN_FILES = 1000
_TEMPLATE_CACHE_SIZE = 32
_FILE_CACHE_SIZE = 32
_RENDER_BATCH = 512
_UNSAFE_PARQUET_FEATURES = {
    "deletionvectors",
    "columnmapping",
    "timestampntz",
    "timestampntz-preview",
}


# ======================================================================================== errors
class ApiError(Exception):
    """An error answered as ``{"errorCode": code, "message": message}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str, code: str = "INVALID_PARAMETER_VALUE") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def _to_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotADeltaTableError):
        return ApiError(400, "RESOURCE_DOES_NOT_EXIST", str(exc))
    if isinstance(exc, NotFoundError | InvalidNameError):
        return not_found(str(exc))
    if isinstance(exc, DeltaLogError | InvalidArgumentError):
        return bad_request(str(exc))
    if isinstance(exc, TokenError):
        return ApiError(401, "UNAUTHENTICATED", str(exc))
    if isinstance(exc, SharelabError):
        return bad_request(str(exc))
    log.exception("internal error", exc_info=exc)
    return ApiError(500, "INTERNAL_ERROR", "Internal server error; the server log has the details")


def error_response(err: ApiError, head: bool = False) -> Response:
    if head:
        return Response(status_code=err.status)
    return JSONResponse(
        {"errorCode": err.code, "message": err.message},
        status_code=err.status,
        media_type="application/json; charset=utf-8",
    )


# ======================================================================================== audit
class AuditWriter:
    """Batches audit events on a background thread so requests never wait for SQLite."""

    def __init__(self, catalog: Any, batch_window: float = 0.05, max_batch: int = 500) -> None:
        self._catalog = catalog
        self._queue: queue.Queue[Any] = queue.Queue()
        self._window = batch_window
        self._max = max_batch
        self._thread: threading.Thread | None = None
        self._stop = object()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sharelab-audit", daemon=True)
            self._thread.start()

    def put(self, event: Any) -> None:
        self._queue.put(event)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is self._stop:
                break
            batch = [item]
            deadline = time.monotonic() + self._window
            while len(batch) < self._max:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is self._stop:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
        rest = []
        while True:  # drain whatever arrived after the stop marker
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not self._stop:
                rest.append(item)
        self._write(rest)

    def _write(self, batch: list[Any]) -> None:
        if not batch:
            return
        try:
            self._catalog.record_audit(batch)
        except Exception:  # an audit failure must not take the server down
            log.exception("could not record %d audit events", len(batch))

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(self._stop)
            self._thread.join(timeout)
            self._thread = None


# ======================================================================================== helpers
def _bool_param(value: Any, name: str) -> bool:
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


def _int_param(value: Any, name: str, *, minimum: int | None = None) -> int | None:
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


def _pv_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def partition_predicate(table: Any, recipient: Any) -> Callable[[dict[str, Any]], bool] | None:
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


@dataclass
class AuditInfo:
    """What a handler learned about a request, for the audit row."""

    action: str
    recipient: str | None = None
    share: str | None = None
    schema: str | None = None
    table: str | None = None
    version: int | None = None
    start_version: int | None = None
    end_version: int | None = None
    num_files: int | None = None
    has_predicate_hints: bool = False
    has_limit_hint: bool = False
    response_format: str | None = None


# ======================================================================================== the service
class SharingService:
    """The protocol logic; the Starlette routes are thin wrappers around it."""

    def __init__(
        self,
        home: Any,
        public_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        url_ttl_seconds: int = DEFAULT_URL_TTL_SECONDS,
    ) -> None:
        from helpers.home import LabHome

        self.home = home if isinstance(home, LabHome) else LabHome.resolve(home)
        self.catalog = self.home.open_catalog()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.url_ttl_ms = int(url_ttl_seconds * 1000)
        self.signer = Signer(load_or_create_key(self.home.server_dir / "secret.key"))
        self.audit = AuditWriter(self.catalog)
        self._templates: OrderedDict[tuple[Any, ...], tuple[Snapshot, list[Any]]] = OrderedDict()
        self._templates_lock = threading.Lock()
        # (table location, format) -> {path: entry} of the last latest-version build (LRU)
        self._file_cache: OrderedDict[tuple[Any, ...], dict[str, _Entry]] = OrderedDict()
        self._entries_building: dict[tuple[Any, ...], threading.Event] = {}
        self._table_cache: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._stopping = threading.Event()

    # -------------------------------------------------------------- auth and lookups
    def authenticate(self, request: Request) -> Any:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "UNAUTHENTICATED",
                "Missing bearer token; send 'Authorization: Bearer <token>' "
                "(the bearerToken of your profile file)",
            )
        recipient = self.catalog.authenticate(token.strip())
        if recipient is None:
            raise ApiError(
                401,
                "UNAUTHENTICATED",
                "The bearer token is unknown, expired or revoked; ask the "
                "provider for a new profile",
            )
        return recipient

    def granted_share(self, recipient: Any, share: str) -> Any:
        for s in self.catalog.recipient_shares(recipient.name):
            if s.name.lower() == share.lower():
                return s
        raise not_found(f"Share '{share}' does not exist or is not shared with you")

    def shared_table(self, recipient: Any, share: str, schema: str, table: str) -> Any:
        self.granted_share(recipient, share)
        try:
            return self.catalog.get_shared_table(share, schema, table)
        except (NotFoundError, InvalidNameError):
            raise not_found(f"Table '{share}.{schema}.{table}' does not exist") from None

    def table_log(self, table: Any) -> DeltaLog:
        location = str(table.location)
        if "://" in location and not location.startswith("file://") and not is_s3(location):
            raise bad_request(
                f"Table '{table.schema}.{table.name}' is stored on an object store ({location.split('://')[0]}://); "
                "this lab server serves local tables and S3-compatible (s3://) tables only",
                "UNSUPPORTED_OPERATION",
            )
        return get_log(location)

    def presigner(self, log_: ObjectStoreDeltaLog) -> tuple[int, Callable[[str], str]]:
        """(expiry in epoch ms, add path -> the store's pre-signed GET URL) for an object-store table.

        Every URL of one response is signed at the same second for the server's URL TTL, so the
        reported ``expirationTimestamp`` is exactly when the store stops accepting it.
        """
        now = datetime.now(UTC).replace(microsecond=0)
        ttl = max(1, min(self.url_ttl_ms // 1000, MAX_EXPIRES_SECONDS))
        exp = int(now.timestamp()) * 1000 + ttl * 1000
        settings = log_.settings

        def sign(raw_path: str) -> str:
            bucket, key = log_.object_key(raw_path)
            return presign_get(settings, bucket, key, expires_seconds=ttl, now=now)

        return exp, sign

    # -------------------------------------------------------------- URLs
    def base_url(self, request: Request) -> str:
        if self.public_url:
            return self.public_url
        return str(request.base_url).rstrip("/")

    def endpoint(self, request: Request) -> str:
        return f"{self.base_url(request)}{self.prefix}/"

    def _file_entries(
        self, table: Any, snapshot: Snapshot, log_: DeltaLog, fmt: str, time_travel: bool
    ) -> _EntrySet:
        """(add, line template, path part of the file token) for every active file of a snapshot, cached.

        The per-file work (line template: JSON encoding of partition values and stats, file id; the
        base64 path part of the token) does not depend on the table version, so it is kept per table
        location and format across versions: after a commit only the files it added are encoded again.
        A cached entry is reused only for the very same ``add`` action (identity, else equality).
        """
        key = (
            id(snapshot),
            fmt,
            time_travel,
            table.id,
            table.share.lower(),
            table.schema.lower(),
            table.name.lower(),
        )
        while True:
            with self._templates_lock:
                hit = self._templates.get(key)
                if hit is not None and hit[0] is snapshot:
                    self._templates.move_to_end(key)
                    return hit[1]
                # one build per key at a time (a request arriving during the warm-up waits for it)
                pending = self._entries_building.get(key)
                if pending is None:
                    pending = self._entries_building[key] = threading.Event()
                    break
            pending.wait()
        try:
            return self._build_entries(key, table, snapshot, log_, fmt, time_travel)
        finally:
            with self._templates_lock:
                if self._entries_building.get(key) is pending:
                    del self._entries_building[key]
            pending.set()

    def _build_entries(
        self,
        key: tuple[Any, ...],
        table: Any,
        snapshot: Snapshot,
        log_: DeltaLog,
        fmt: str,
        time_travel: bool,
    ) -> _EntrySet:
        """Build (and cache under ``key``) the entries of :meth:`_file_entries`, reusing unchanged files'."""
        version = snapshot.version if time_travel else None
        timestamp = snapshot.timestamp if time_travel else None
        # time-travel lines carry the version and timestamp: nothing to share with other versions, so
        # only the latest-version file lines are kept per table (which bounds the memory as well)
        fkey = (log_.location, fmt)
        known: dict[str, _Entry] = {}
        if not time_travel:
            with self._templates_lock:
                known = self._file_cache.get(fkey) or {}
        build = FileLineTemplate.build
        token_path = self.signer.token_path
        fresh: dict[str, _Entry] = {}
        entries: list[_Entry] = []
        for add in snapshot.files:
            path = add["path"]
            entry = known.get(path)
            if entry is None or (entry[0] is not add and entry[0] != add):
                part = token_path(path)
                tmpl = build("file", fmt, add, version=version, timestamp=timestamp)
                entry = (add, tmpl, part, part.encode("ascii"))
            fresh[path] = entry
            entries.append(entry)
        entry_set = _EntrySet(entries)
        with self._templates_lock:
            if not time_travel:
                # only the files of the last build are kept per table: removed files drop out
                self._file_cache[fkey] = fresh
                self._file_cache.move_to_end(fkey)
                while len(self._file_cache) > _FILE_CACHE_SIZE:
                    self._file_cache.popitem(last=False)
            self._templates[key] = (snapshot, entry_set)
            while len(self._templates) > _TEMPLATE_CACHE_SIZE:
                self._templates.popitem(last=False)
        return entry_set

    def prewarm(self) -> None:
        """Parse the latest snapshot of every shared table once (best effort; failures are logged).

        The first ``/query`` of a large table then finds its log state and parquet-format file lines
        cached instead of replaying the log. Cheap when nothing changed: one ``stat`` per table.
        """
        seen: set[tuple[str, str, str]] = set()
        try:
            shares = self.catalog.list_shares()
        except Exception:  # noqa: BLE001
            log.exception("prewarm: cannot list shares")
            return
        for share in shares:
            try:
                tables = self.catalog.shared_tables(share.name)
            except Exception:  # noqa: BLE001 - dropped meanwhile
                continue
            for table in tables:
                key = (table.share.lower(), table.schema.lower(), table.name.lower())
                if key in seen or self._stopping.is_set():
                    continue
                seen.add(key)
                try:
                    log_ = self.table_log(table)
                    snapshot = log_.snapshot()
                    # only large tables need their file lines pre-rendered (LRU-friendly)
                    if snapshot.min_reader_version == 1 and len(snapshot.files) >= _WARM_MIN_FILES:
                        self._file_entries(table, snapshot, log_, "parquet", False)
                except Exception as exc:  # noqa: BLE001 - a broken table must not stop the others
                    log.debug("prewarm skipped %s.%s.%s: %s", *key, exc)

    def warm_loop(self, interval: float = 10.0) -> None:
        """Keep the latest snapshots warm: :meth:`prewarm` at start-up and every ``interval`` seconds."""
        while not self._stopping.is_set():
            self.prewarm()
            self._stopping.wait(interval)

    def expiry_ms(self) -> int:
        """URL expiry: now + TTL, rounded up to the minute.

        Rounding makes every URL minted within the same minute identical, so rendered file lines are
        reused across requests (a warm ``/query`` of a 10,000-file table only joins cached strings).
        """
        raw = int(time.time() * 1000) + self.url_ttl_ms
        return -(-raw // _EXPIRY_STEP_MS) * _EXPIRY_STEP_MS

    def file_url(self, base: str, token: str, exp: int, recipient: str = "") -> str:
        """A signed download URL (``rcp`` names the recipient for the audit log; it is signed too)."""
        sig = self.signer.sign_file(token, exp, recipient)
        rcp = f"&rcp={quote(recipient, safe='')}" if recipient else ""
        return f"{base}{self.prefix}/files/{token}?exp={exp}{rcp}&X-Amz-Signature={sig}"

    def file_url_parts(
        self, base: str, header: str, exp: int, recipient: str = ""
    ) -> tuple[str, str]:
        """The JSON-encoded text of :meth:`file_url` around a file's path token, for many files.

        ``dumps(file_url(base, f"{header}.{p}", exp, recipient))`` is ``head + p + tail + signature + '"'``:
        only ``base`` may need JSON escaping; the token, expiry, quoted recipient and hex signature are
        plain ASCII that JSON leaves as is.
        """
        rcp = f"&rcp={quote(recipient, safe='')}" if recipient else ""
        head = dumps(f"{base}{self.prefix}/files/{header}.")[:-1]
        return head, f"?exp={exp}{rcp}&X-Amz-Signature="

    def _token(self, table: Any, version: int, path: str) -> str:
        return self.signer.file_token(
            FileRef(table.id, version, path, table.share, table.schema, table.name)
        )

    # -------------------------------------------------------------- lists
    def _page(
        self, items: list[Any], params: Any, binding: dict[str, Any]
    ) -> tuple[list[Any], str | None]:
        max_results = _int_param(params.get("maxResults"), "maxResults", minimum=0)
        if max_results is None:
            max_results = MAX_LIST_RESULTS
        if max_results > MAX_LIST_RESULTS:
            raise bad_request(f"maxResults must be at most {MAX_LIST_RESULTS}, got {max_results}")
        offset = 0
        token = params.get("pageToken")
        if token:
            payload = self.signer.read_token("list", token, "nextPageToken")
            if payload.get("b") != binding:
                raise bad_request("invalid 'nextPageToken': it belongs to another listing")
            offset = int(payload.get("o", 0))
        page = items[offset : offset + max_results]
        nxt = None
        if offset + max_results < len(items):
            nxt = self.signer.make_token(
                "list", {"b": binding, "o": offset + max_results}, PAGE_TOKEN_TTL_SECONDS
            )
        return page, nxt

    def list_shares(self, recipient: Any, params: Any) -> dict[str, Any]:
        shares = [ShareItem(s.name, s.id) for s in self.catalog.recipient_shares(recipient.name)]
        page, nxt = self._page(shares, params, {"l": "shares", "r": recipient.id})
        return list_page(page, nxt)

    def get_share(self, recipient: Any, share: str) -> dict[str, Any]:
        s = self.granted_share(recipient, share)
        return {"share": ShareItem(s.name, s.id).to_json()}

    def list_schemas(self, recipient: Any, share: str, params: Any) -> dict[str, Any]:
        s = self.granted_share(recipient, share)
        schemas = [SchemaItem(name, s.name) for name in self.catalog.shared_schemas(s.name)]
        page, nxt = self._page(schemas, params, {"l": "schemas", "s": s.id})
        return list_page(page, nxt)

    def list_tables(
        self, recipient: Any, share: str, schema: str | None, params: Any
    ) -> dict[str, Any]:
        s = self.granted_share(recipient, share)
        if schema is not None:
            known = {n.lower(): n for n in self.catalog.shared_schemas(s.name)}
            if schema.lower() not in known:
                raise not_found(f"Schema '{schema}' does not exist in share '{share}'")
        tables = [
            TableItem(t.name, t.schema, s.name, t.id, s.id)
            for t in self.catalog.shared_tables(s.name)
            if schema is None or t.schema.lower() == schema.lower()
        ]
        binding = {
            "l": "tables" if schema is not None else "all-tables",
            "s": s.id,
            "c": (schema or "").lower(),
        }
        page, nxt = self._page(tables, params, binding)
        return list_page(page, nxt)

    # -------------------------------------------------------------- version / metadata
    def table_version(
        self, recipient: Any, names: tuple[str, str, str], params: Any, info: AuditInfo
    ) -> int:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        ts = params.get("startingTimestamp")
        if ts is not None:
            if not table.history:
                raise bad_request(
                    "startingTimestamp needs history sharing; the provider must share this table WITH HISTORY"
                )
            version = log_.version_at_or_after(
                parse_timestamp(ts, "startingTimestamp"), before_first_ok=True, text=ts
            )
        else:
            version = log_.latest_version()
        info.version = version
        return version

    def _history_version(
        self, table: Any, log_: DeltaLog, version: Any, timestamp: Any
    ) -> tuple[int | None, bool]:
        """Resolve ``version``/``timestamp`` (time travel); returns (version or None, time-travelled)."""
        if version is not None and timestamp is not None:
            raise bad_request("Please only provide one of: version, timestamp")
        if version is None and timestamp is None:
            return None, False
        if not table.history:
            raise bad_request(
                "Reading a table version or timestamp needs history sharing; the provider must share "
                "this table WITH HISTORY"
            )
        if version is not None:
            v = _int_param(version, "version")
            if v is None or v < 0:
                raise bad_request(f"version must be >= 0, got {version}")
        else:
            if not isinstance(timestamp, str):
                raise bad_request(
                    f"timestamp must be a string, got {timestamp!r}", "MALFORMED_REQUEST"
                )
            v = log_.version_at_or_before(
                parse_timestamp(timestamp, "timestamp"), after_last_ok=False, text=timestamp
            )
        self._check_start_version(table, v)
        return v, True

    @staticmethod
    def _check_start_version(table: Any, version: int) -> None:
        start = getattr(table, "start_version", None)
        if start is not None and version < start:
            raise bad_request(
                f"You can only query table data since version {start} (the share's start version)"
            )

    def _config(self, table: Any, snapshot: Snapshot) -> dict[str, str]:
        return {"enableChangeDataFeed": "true"} if table.history and snapshot.cdf_enabled else {}

    def _head_lines(
        self,
        table: Any,
        snapshot: Snapshot,
        fmt: str,
        version_field: int | None,
        with_size: bool = True,
    ) -> list[str]:
        return [
            ndjson(ProtocolLine(fmt, snapshot.protocol).to_json()),
            ndjson(
                MetadataLine(
                    fmt,
                    snapshot.metadata,
                    self._config(table, snapshot),
                    version=version_field,
                    size=snapshot.size if with_size else None,
                    num_files=len(snapshot.files) if with_size else None,
                ).to_json()
            ),
        ]

    def metadata(
        self,
        recipient: Any,
        names: tuple[str, str, str],
        params: Any,
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> tuple[dict[str, str], list[str]]:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        version, travelled = self._history_version(
            table, log_, params.get("version"), params.get("timestamp")
        )
        snapshot = log_.snapshot(version)
        fmt = choose_format(caps, snapshot)
        info.version, info.response_format = snapshot.version, fmt
        lines = self._head_lines(table, snapshot, fmt, snapshot.version if travelled else None)
        return self._headers(snapshot.version, fmt, False), lines

    @staticmethod
    def _headers(
        version: int, fmt: str, end_stream: bool, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        caps = f"responseformat={fmt}"
        if end_stream:
            caps += ";includeendstreamaction=true"
        headers = {"Delta-Table-Version": str(version), "delta-sharing-capabilities": caps}
        if extra:
            headers.update(extra)
        return headers

    # -------------------------------------------------------------- query
    def query(
        self,
        request: Request,
        recipient: Any,
        names: tuple[str, str, str],
        body: dict[str, Any],
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> tuple[dict[str, str], Iterator[str]]:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        hints = body.get("jsonPredicateHints")
        limit = _int_param(body.get("limitHint"), "limitHint", minimum=0)
        info.has_predicate_hints = bool(hints) or bool(body.get("predicateHints"))
        info.has_limit_hint = limit is not None
        max_files = _int_param(body.get("maxFiles"), "maxFiles")
        if max_files is not None and max_files <= 0:
            raise bad_request(f"maxFiles must be > 0, got {max_files}")
        if max_files is not None:
            max_files = min(max_files, MAX_FILES_PER_PAGE)
        page_token = body.get("pageToken")
        include_refresh = _bool_param(body.get("includeRefreshToken"), "includeRefreshToken")
        refresh_token = body.get("refreshToken")
        starting = body.get("startingVersion")
        ending = body.get("endingVersion")
        chosen = [k for k in ("version", "timestamp", "startingVersion") if body.get(k) is not None]
        if len(chosen) > 1:
            raise bad_request(
                f"Please only provide one of: version, timestamp, startingVersion (got {', '.join(chosen)})"
            )
        if (include_refresh or refresh_token) and (chosen or page_token):
            raise bad_request(
                "includeRefreshToken and refreshToken cannot be combined with version, timestamp, "
                "startingVersion or pageToken"
            )
        if ending is not None and starting is None:
            raise bad_request("endingVersion can only be used together with startingVersion")
        fh = body.get("_fileidhash")
        extra = {"fileidhash": fh} if fh else None
        end_stream = (
            "true" in caps.get("includeendstreamaction", [])
            or max_files is not None
            or include_refresh
            or bool(refresh_token)
        )
        base = self.base_url(request)
        checksum = params_checksum(
            {
                "h": hints,
                "l": limit,
                "s": starting,
                "e": ending,
                "v": body.get("version"),
                "t": body.get("timestamp"),
                "f": caps.get("responseformat"),
                "m": max_files,
            }
        )
        if starting is not None:
            return self._query_stream(
                table,
                log_,
                body,
                caps,
                info,
                base,
                max_files,
                page_token,
                checksum,
                end_stream,
                extra,
                partition_predicate(table, recipient),
                recipient,
            )

        version, travelled = self._history_version(
            table, log_, body.get("version"), body.get("timestamp")
        )
        offset = 0
        if refresh_token:
            payload = self.signer.read_token("refresh", refresh_token, "refreshToken")
            if payload.get("t") != table.id or payload.get("c") != checksum:
                raise bad_request(
                    "invalid 'refreshToken': it was issued for another table or query"
                )
            version = int(payload["v"])
        if page_token:
            payload = self.signer.read_token("page", page_token, "pageToken")
            if payload.get("t") != table.id or payload.get("c") != checksum:
                raise bad_request("invalid 'pageToken': it was issued for another table or query")
            version = int(payload["v"])
            offset = int(payload["o"])
        snapshot = log_.snapshot(version)
        fmt = choose_format(caps, snapshot)
        entry_set = self._file_entries(table, snapshot, log_, fmt, travelled)
        entries = entry_set.entries
        allowed = partition_predicate(table, recipient)
        predicate = parse_json_predicate(hints)
        selected: list[int] | range
        if allowed is None and predicate is None:
            selected = range(len(entries))
        else:
            selected = [
                i
                for i, (add, *_rest) in enumerate(entries)
                if (allowed is None or allowed(add)) and file_matches(predicate, add)
            ]
        if limit is not None:
            by_id = {id(entries[i][0]): i for i in selected}
            selected = [
                by_id[id(a)] for a in apply_limit_hint((entries[i][0] for i in selected), limit)
            ]
        next_token = None
        if max_files is not None:
            if offset + max_files < len(selected):
                next_token = self.signer.make_token(
                    "page",
                    {"t": table.id, "v": snapshot.version, "c": checksum, "o": offset + max_files},
                    PAGE_TOKEN_TTL_SECONDS,
                )
            selected = selected[offset : offset + max_files]
        elif offset:
            selected = selected[offset:]
        info.version, info.response_format, info.num_files = snapshot.version, fmt, len(selected)
        exp = self.expiry_ms()
        refresh = None
        if include_refresh or refresh_token:
            refresh = self.signer.make_token(
                "refresh",
                {"t": table.id, "v": snapshot.version, "c": checksum},
                REFRESH_TOKEN_TTL_SECONDS,
            )
        head = self._head_lines(table, snapshot, fmt, snapshot.version if travelled else None)
        rname = recipient.name
        render: _LineRenderer | _PresignedLineRenderer
        if isinstance(log_, ObjectStoreDeltaLog):
            exp, sign = self.presigner(log_)
            cache: list[str | None] = []
            render = _PresignedLineRenderer(sign, exp)
        else:
            cache = entry_set.rendered((base, exp, rname))
            header = self.signer.token_header(
                table.id, snapshot.version, table.share, table.schema, table.name
            )
            render = _LineRenderer(
                self.file_url_parts(base, header, exp, rname),
                self.signer.file_signer(header, exp, rname),
                str(exp),
            )

        def lines() -> Iterator[str]:
            yield "".join(head)
            # whole batches of lines per yield: fewer generator round trips (the response chunks them)
            for lo in range(0, len(selected), _RENDER_BATCH):
                yield render.batch(entries, cache, selected[lo : lo + _RENDER_BATCH])
            if end_stream:
                yield ndjson(
                    EndStreamAction(
                        refresh_token=refresh,
                        next_page_token=next_token,
                        min_url_expiration_timestamp=exp if selected else None,
                    ).to_json()
                )

        return self._headers(snapshot.version, fmt, end_stream, extra), lines()

    def _query_stream(
        self,
        table: Any,
        log_: DeltaLog,
        body: dict[str, Any],
        caps: dict[str, list[str]],
        info: AuditInfo,
        base: str,
        max_files: int | None,
        page_token: Any,
        checksum: str,
        end_stream: bool,
        extra: dict[str, str] | None,
        allowed: Callable[[dict[str, Any]], bool] | None,
        recipient: Any,
    ) -> tuple[dict[str, str], Iterator[str]]:
        """``/query`` with ``startingVersion``: add/remove lines of each commit in the range."""
        if not table.history:
            raise bad_request(
                "startingVersion needs history sharing; the provider must share this table WITH HISTORY"
            )
        start = _int_param(body.get("startingVersion"), "startingVersion")
        end = _int_param(body.get("endingVersion"), "endingVersion")
        if start is None or start < 0:
            raise bad_request(f"startingVersion must be >= 0, got {body.get('startingVersion')}")
        latest = log_.latest_version()
        if end is not None and end < start:
            raise bad_request(
                f"startingVersion({start}) must be smaller than or equal to endingVersion({end})"
            )
        if end is not None and end > latest:
            raise bad_request(
                f"endingVersion({end}) is greater than the latest version of the table({latest})"
            )
        if start > latest:
            raise bad_request(
                f"startingVersion({start}) is greater than the latest version of the table({latest})"
            )
        self._check_start_version(table, start)
        end = latest if end is None else end
        snapshot = log_.snapshot(start)
        fmt = choose_format(caps, snapshot)
        actions = self._commit_actions(log_, start, end, cdf=False, metadata_lines=True, fmt=fmt)
        return self._emit_actions(
            table,
            snapshot,
            fmt,
            info,
            base,
            actions,
            start,
            end,
            max_files,
            page_token,
            checksum,
            end_stream,
            extra,
            allowed,
            recipient,
        )

    # -------------------------------------------------------------- changes
    def changes(
        self,
        request: Request,
        recipient: Any,
        names: tuple[str, str, str],
        params: Any,
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> tuple[dict[str, str], Iterator[str]]:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        full = f"{table.share}.{table.schema}.{table.name}"
        if not table.history:
            raise bad_request(
                f"cdf is not enabled on table {full}; the provider must share it WITH HISTORY"
            )
        sv, st = params.get("startingVersion"), params.get("startingTimestamp")
        ev, et = params.get("endingVersion"), params.get("endingTimestamp")
        if sv is None and st is None:
            raise bad_request("No startingVersion or startingTimestamp provided for CDF read.")
        if sv is not None and st is not None:
            raise bad_request(
                "Multiple starting arguments provided for CDF read. Please provide only one of "
                "startingVersion or startingTimestamp."
            )
        if ev is not None and et is not None:
            raise bad_request(
                "Multiple ending arguments provided for CDF read. Please provide only one of "
                "endingVersion or endingTimestamp."
            )
        include_md = _bool_param(
            params.get("includeHistoricalMetadata"), "includeHistoricalMetadata"
        )
        include_proto = _bool_param(
            params.get("includeHistoricalProtocol"), "includeHistoricalProtocol"
        )
        max_files = _int_param(params.get("maxFiles"), "maxFiles")
        if max_files is not None and max_files <= 0:
            raise bad_request(f"maxFiles must be > 0, got {max_files}")
        latest = log_.latest_version()
        if sv is not None:
            start = _int_param(sv, "startingVersion")
            if start is None or start < 0:
                raise bad_request(f"startingVersion must be >= 0, got {sv}")
        else:
            start = log_.version_at_or_after(
                parse_timestamp(st, "startingTimestamp"), before_first_ok=False, text=st
            )
        if ev is not None:
            end = _int_param(ev, "endingVersion")
            if end is None or end < 0:
                raise bad_request(f"endingVersion must be >= 0, got {ev}")
        elif et is not None:
            end = log_.version_at_or_before(
                parse_timestamp(et, "endingTimestamp"), after_last_ok=True, text=et
            )
        else:
            end = latest
        if start > latest:
            raise bad_request(
                f"Provided Start version({start}) for reading change data is invalid. Start version "
                f"cannot be greater than the latest version of the table({latest})."
            )
        end = min(end, latest)
        if end < start:
            raise bad_request(
                f"CDF range from start {start} to end {end} was invalid. End cannot be before start."
            )
        if table.start_version is not None and start < table.start_version:
            raise bad_request(
                f"You can only query table changes since version {table.start_version}."
            )
        if start < log_.earliest_commit():
            raise bad_request(
                f"Change data for version {start} is no longer available (the log was cleaned up); "
                f"start at version {log_.earliest_commit()} or later"
            )
        start_snapshot = log_.snapshot(start)
        disabled = None if start_snapshot.cdf_enabled else start
        if disabled is None:
            for v in range(start + 1, end + 1):
                md = log_.commit(v).metadata
                if (
                    md is not None
                    and str(
                        (md.get("configuration") or {}).get("delta.enableChangeDataFeed", "")
                    ).lower()
                    != "true"
                ):
                    disabled = v
                    break
        if disabled is not None:
            raise bad_request(
                f"Error getting change data for range [{start}, {end}] as change data was not recorded "
                f"for version [{disabled}]. The provider must enable the change data feed "
                "(delta.enableChangeDataFeed = true) on the table."
            )
        fmt = choose_format(caps, start_snapshot)
        head_snapshot = start_snapshot if (include_md or fmt == "delta") else log_.snapshot(latest)
        fh = params.get("_fileidhash")
        extra = {"fileidhash": fh} if fh else None
        end_stream = "true" in caps.get("includeendstreamaction", []) or max_files is not None
        checksum = params_checksum(
            {"s": start, "e": end, "m": include_md, "f": caps.get("responseformat"), "x": max_files}
        )
        actions = self._commit_actions(
            log_,
            start,
            end,
            cdf=True,
            metadata_lines=include_md,
            fmt=fmt,
            protocol_lines=include_proto and fmt == "delta",
        )
        info.start_version, info.end_version = start, end
        return self._emit_actions(
            table,
            head_snapshot,
            fmt,
            info,
            self.base_url(request),
            actions,
            start,
            end,
            max_files,
            params.get("pageToken"),
            checksum,
            end_stream,
            extra,
            partition_predicate(table, recipient),
            recipient,
        )

    def _commit_actions(
        self,
        log_: DeltaLog,
        start: int,
        end: int,
        *,
        cdf: bool,
        metadata_lines: bool,
        fmt: str,
        protocol_lines: bool = False,
    ) -> list[tuple[str, int, int, dict[str, Any]]]:
        """(kind, version, timestamp, action) for each commit in [start, end]."""
        out: list[tuple[str, int, int, dict[str, Any]]] = []
        for v in range(start, end + 1):
            commit = log_.commit(v)
            ts = log_.commit_timestamp(v)
            if v > start and protocol_lines and commit.protocol is not None:
                out.append(("protocol", v, ts, commit.protocol))
            if v > start and metadata_lines and commit.metadata is not None:
                out.append(("metaData", v, ts, commit.metadata))
            if cdf and commit.cdcs:
                out.extend(("cdf", v, ts, a) for a in commit.cdcs)
                continue
            if cdf and commit.is_empty_merge():
                continue
            out.extend(("add", v, ts, a) for a in commit.adds if a.get("dataChange", True))
            out.extend(("remove", v, ts, a) for a in commit.removes if a.get("dataChange", True))
        return out

    def _emit_actions(
        self,
        table: Any,
        head_snapshot: Snapshot,
        fmt: str,
        info: AuditInfo,
        base: str,
        actions: list[tuple[str, int, int, dict[str, Any]]],
        start: int,
        end: int,
        max_files: int | None,
        page_token: Any,
        checksum: str,
        end_stream: bool,
        extra: dict[str, str] | None,
        allowed: Callable[[dict[str, Any]], bool] | None,
        recipient: Any = None,
    ) -> tuple[dict[str, str], Iterator[str]]:
        """Stream the protocol + metaData lines and the (filtered, paged) per-commit actions."""
        if allowed is not None:
            actions = [a for a in actions if a[0] in ("metaData", "protocol") or allowed(a[3])]
        offset = 0
        if page_token:
            payload = self.signer.read_token("page", page_token, "pageToken")
            if payload.get("t") != table.id or payload.get("c") != checksum:
                raise bad_request("invalid 'pageToken': it was issued for another table or query")
            offset = int(payload["o"])
        next_token = None
        if max_files is not None:
            if offset + max_files < len(actions):
                next_token = self.signer.make_token(
                    "page",
                    {"t": table.id, "c": checksum, "o": offset + max_files},
                    PAGE_TOKEN_TTL_SECONDS,
                )
            actions = actions[offset : offset + max_files]
        info.response_format = fmt
        info.start_version, info.end_version = start, end
        info.num_files = sum(1 for a in actions if a[0] not in ("metaData", "protocol"))
        exp = self.expiry_ms()
        presign: Callable[[str], str] | None = None
        store_log = self.table_log(table)
        if isinstance(store_log, ObjectStoreDeltaLog):
            exp, presign = self.presigner(store_log)
        head = self._head_lines(table, head_snapshot, fmt, head_snapshot.version)
        rname = recipient.name if recipient is not None else ""

        def lines() -> Iterator[str]:
            yield from head
            for what, v, ts, action in actions:
                if what == "metaData":
                    yield ndjson(
                        MetadataLine(
                            fmt, action, self._config(table, head_snapshot), version=v
                        ).to_json()
                    )
                elif what == "protocol":
                    yield ndjson(ProtocolLine(fmt, action).to_json())
                else:
                    tmpl = FileLineTemplate.build(what, fmt, action, version=v, timestamp=ts)
                    if presign is not None:
                        yield tmpl.render(presign(action["path"]), exp)
                        continue
                    token = self._token(table, v, action["path"])
                    yield tmpl.render(self.file_url(base, token, exp, rname), exp)
            if end_stream:
                yield ndjson(
                    EndStreamAction(
                        next_page_token=next_token,
                        min_url_expiration_timestamp=exp if actions else None,
                    ).to_json()
                )

        return self._headers(start, fmt, end_stream, extra), lines()

    # -------------------------------------------------------------- downloads
    def resolve_download(
        self, token: str, exp: str, sig: str, info: AuditInfo, rcp: str = ""
    ) -> str:
        """The local path a signed URL grants, or a 403 :class:`ApiError` that reveals nothing."""
        denied = ApiError(
            403,
            "PERMISSION_DENIED",
            "This file URL is invalid or has expired; query the table again to get fresh URLs",
        )
        try:
            ref = self.signer.verify_file(token, exp, sig, recipient=rcp)
        except PermissionError:
            raise denied from None
        info.recipient = rcp or None
        info.share, info.schema, info.table, info.version = (
            ref.share,
            ref.schema,
            ref.table,
            ref.version,
        )
        key = (ref.share.lower(), ref.schema.lower(), ref.table.lower())
        now = time.monotonic()
        cached = self._table_cache.get(key)
        if cached is not None and now - cached[0] < 2.0:
            table = cached[1]
        else:
            try:
                table = self.catalog.get_shared_table(ref.share, ref.schema, ref.table)
            except (NotFoundError, InvalidNameError):
                raise denied from None
            self._table_cache[key] = (now, table)
        if table.id != ref.table_id:
            raise denied
        try:
            log_ = self.table_log(table)
            if log_.is_object_store:  # its files are fetched from the store, never through here
                raise denied
            valid = ref.path in log_.snapshot(ref.version).paths
            if not valid:
                commit = log_.commit(ref.version)
                valid = any(
                    a["path"] == ref.path for a in (*commit.adds, *commit.removes, *commit.cdcs)
                )
            if not valid:
                raise denied
            path = log_.file_path(ref.path)
        except ApiError:
            raise
        except (SharelabError, OSError, ValueError):
            raise denied from None
        if not os.path.isfile(path):
            raise ApiError(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                "This file no longer exists (the table was vacuumed or rewritten); query the table again",
            )
        return path

    def activate(self, request: Request, code: str, info: AuditInfo) -> dict[str, Any]:
        from helpers.catalog import profile_dict

        try:
            recipient, issued = self.catalog.redeem_activation(code)
        except TokenError as exc:
            raise not_found(str(exc)) from None
        info.recipient = recipient.name
        return profile_dict(self.endpoint(request), issued)


_Entry = tuple[dict[str, Any], FileLineTemplate, str, bytes]
"""A file of a snapshot: its ``add`` action, its line template and its token's path part (text, ASCII)."""


class _LineRenderer:
    """Fills file line templates with signed URLs for one (table version, base URL, expiry, recipient).

    :param url_parts: (JSON text of the URL before the path part, text between it and the signature),
        from :meth:`SharingService.file_url_parts`.
    :param sign: the signature of a path part (:meth:`Signer.file_signer`).
    :param exp_text: the expiry as text.
    """

    def __init__(
        self, url_parts: tuple[str, str], sign: Callable[[bytes], str], exp_text: str
    ) -> None:
        self.head, self.tail = url_parts
        self.sign = sign
        self.exp_text = exp_text

    def batch(self, entries: list[_Entry], cache: list[str | None], indexes: Iterable[int]) -> str:
        """The lines of ``entries[i]`` for ``i`` in ``indexes``, joined; rendered ones are kept in ``cache``."""
        head, tail, sign, exp = self.head, self.tail, self.sign, self.exp_text
        out: list[str] = []
        append = out.append
        for i in indexes:
            line = cache[i]
            if line is None:
                _add, t, part, raw = entries[i]
                url = f'{head}{part}{tail}{sign(raw)}"'
                if t.url_first:
                    line = f"{t.prefix}{url}{t.middle}{exp}{t.suffix}"
                else:
                    line = f"{t.prefix}{exp}{t.middle}{url}{t.suffix}"
                cache[i] = line
            append(line)
        return "".join(out)


class _PresignedLineRenderer:
    """Fills file line templates with an object store's pre-signed URLs (:meth:`SharingService.presigner`).

    Nothing is cached: every response signs its URLs afresh (object-store tables in the lab are small).
    """

    def __init__(self, sign: Callable[[str], str], exp: int) -> None:
        self.sign = sign
        self.exp = exp

    def batch(self, entries: list[_Entry], cache: list[str | None], indexes: Iterable[int]) -> str:
        """The lines of ``entries[i]`` for ``i`` in ``indexes``, joined (``cache`` is not used)."""
        sign, exp = self.sign, self.exp
        return "".join(entries[i][1].render(sign(entries[i][0]["path"]), exp) for i in indexes)


class _EntrySet:
    """The cached file entries of one (snapshot, format, table) and their last rendered lines."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self._render_key: tuple[Any, ...] | None = None
        self._rendered: list[str | None] = []
        self._lock = threading.Lock()

    def rendered(self, key: tuple[Any, ...]) -> list[str | None]:
        """The line cache for ``key`` = (base URL, expiry, recipient); reset when the key changes."""
        with self._lock:
            if key != self._render_key:
                self._render_key = key
                self._rendered = [None] * len(self.entries)
            return self._rendered


class _BigChunkFileResponse(FileResponse):
    """Starlette's FileResponse (HEAD, Range/206) with larger reads for throughput."""

    chunk_size = 1024 * 1024


def _chunked(lines: Iterator[str]) -> Iterator[bytes]:
    """Group NDJSON lines into ~256 KiB chunks: one thread hop per chunk, not per line."""
    buf: list[str] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= _CHUNK_BYTES:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


# ======================================================================================== app
def create_app(
    home: Any = None,
    public_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    url_ttl_seconds: int = DEFAULT_URL_TTL_SECONDS,
) -> Starlette:
    """The Starlette application serving the lab home's catalog.

    :param home: lab home (path or :class:`~helpers.home.LabHome`; default: resolved as usual).
    :param public_url: base URL recipients use (``http://host:port``); default: the request's own.
    :param prefix: the protocol prefix.
    :param url_ttl_seconds: lifetime of signed file URLs.
    """
    svc = SharingService(home, public_url, prefix, url_ttl_seconds)
    p = svc.prefix

    def audit(request: Request, info: AuditInfo, status: int, started: float) -> None:
        from helpers.catalog import AuditEvent

        client = request.client
        svc.audit.put(
            AuditEvent(
                action=info.action,
                event_time=datetime.now(UTC),
                recipient=info.recipient,
                share=info.share,
                schema=info.schema,
                table=info.table,
                version=info.version,
                start_version=info.start_version,
                end_version=info.end_version,
                num_files=info.num_files,
                has_predicate_hints=info.has_predicate_hints,
                has_limit_hint=info.has_limit_hint,
                status_code=status,
                user_agent=request.headers.get("user-agent"),
                client_address=client.host if client else None,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                response_format=info.response_format,
            )
        )

    def handler(action: str, *, authed: bool = True, head_errors: bool = False):
        """Wrap ``fn(request, info, recipient) -> Response`` with auth, errors and auditing."""

        def wrap(fn: Callable[..., Any]) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                started = time.perf_counter()
                pp = request.path_params
                info = AuditInfo(
                    action, share=pp.get("share"), schema=pp.get("schema"), table=pp.get("table")
                )
                head = head_errors or request.method == "HEAD"
                try:
                    recipient = None
                    if authed:
                        recipient = await run_in_threadpool(svc.authenticate, request)
                        info.recipient = recipient.name
                    response = await fn(request, info, recipient)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
                    err = _to_api_error(exc)
                    audit(request, info, err.status, started)
                    return error_response(err, head=head)
                if isinstance(response, StreamingResponse):
                    inner = response.body_iterator

                    async def audited() -> Any:
                        status = response.status_code
                        try:
                            async for chunk in inner:
                                yield chunk
                        except BaseException:
                            status = 500
                            raise
                        finally:
                            audit(request, info, status, started)

                    response.body_iterator = audited()
                else:
                    audit(request, info, response.status_code, started)
                return response

            return endpoint

        return wrap

    def names(request: Request) -> tuple[str, str, str]:
        pp = request.path_params
        return pp["share"], pp["schema"], pp["table"]

    def ndjson_response(headers: dict[str, str], lines: Iterator[str]) -> StreamingResponse:
        return StreamingResponse(_chunked(lines), media_type=NDJSON, headers=headers)

    def json_response(body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(body, media_type="application/json; charset=utf-8")

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "version": __version__})

    @handler("listShares")
    async def list_shares(request: Request, info: AuditInfo, r: Any) -> Response:
        return json_response(await run_in_threadpool(svc.list_shares, r, request.query_params))

    @handler("getShare")
    async def get_share(request: Request, info: AuditInfo, r: Any) -> Response:
        return json_response(
            await run_in_threadpool(svc.get_share, r, request.path_params["share"])
        )

    @handler("listSchemas")
    async def list_schemas(request: Request, info: AuditInfo, r: Any) -> Response:
        return json_response(
            await run_in_threadpool(
                svc.list_schemas, r, request.path_params["share"], request.query_params
            )
        )

    @handler("listTables")
    async def list_tables(request: Request, info: AuditInfo, r: Any) -> Response:
        pp = request.path_params
        return json_response(
            await run_in_threadpool(
                svc.list_tables, r, pp["share"], pp["schema"], request.query_params
            )
        )

    @handler("listAllTables")
    async def list_all_tables(request: Request, info: AuditInfo, r: Any) -> Response:
        return json_response(
            await run_in_threadpool(
                svc.list_tables, r, request.path_params["share"], None, request.query_params
            )
        )

    @handler("getTableVersion")
    async def table_version(request: Request, info: AuditInfo, r: Any) -> Response:
        version = await run_in_threadpool(
            svc.table_version, r, names(request), request.query_params, info
        )
        return Response(status_code=200, headers={"Delta-Table-Version": str(version)})

    def _check_fileidhash(request: Request) -> str | None:
        fh = request.headers.get("fileidhash")
        if fh is not None and fh.strip().lower() not in ("parquet", "delta"):
            raise bad_request(f"fileidhash must be parquet or delta, got {fh!r}")
        return fh.strip().lower() if fh else None

    @handler("getTableMetadata")
    async def metadata(request: Request, info: AuditInfo, r: Any) -> Response:
        caps = parse_capabilities(request.headers.get("delta-sharing-capabilities"))
        fh = _check_fileidhash(request)
        headers, lines = await run_in_threadpool(
            svc.metadata, r, names(request), request.query_params, caps, info
        )
        if fh:
            headers["fileidhash"] = fh
        return Response("".join(lines), media_type=NDJSON, headers=headers)

    @handler("queryTable")
    async def query(request: Request, info: AuditInfo, r: Any) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise bad_request("The request body is not valid JSON", "MALFORMED_REQUEST") from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object", "MALFORMED_REQUEST")
        caps = parse_capabilities(request.headers.get("delta-sharing-capabilities"))
        fh = _check_fileidhash(request)
        if fh:
            body["_fileidhash"] = fh
        headers, lines = await run_in_threadpool(
            svc.query, request, r, names(request), body, caps, info
        )
        return ndjson_response(headers, lines)

    @handler("queryTableChanges")
    async def changes(request: Request, info: AuditInfo, r: Any) -> Response:
        caps = parse_capabilities(request.headers.get("delta-sharing-capabilities"))
        fh = _check_fileidhash(request)
        params = dict(request.query_params)
        if fh:
            params["_fileidhash"] = fh
        headers, lines = await run_in_threadpool(
            svc.changes, request, r, names(request), params, caps, info
        )
        return ndjson_response(headers, lines)

    @handler("downloadFile", authed=False)
    async def download(request: Request, info: AuditInfo, r: Any) -> Response:
        q = request.query_params
        sig = q.get("X-Amz-Signature") or ""
        path = await run_in_threadpool(
            svc.resolve_download,
            request.path_params["token"],
            q.get("exp") or "",
            sig,
            info,
            q.get("rcp") or "",
        )
        info.num_files = 1
        return _BigChunkFileResponse(path, media_type="application/octet-stream")

    @handler("activate", authed=False)
    async def activation(request: Request, info: AuditInfo, r: Any) -> Response:
        body = await run_in_threadpool(svc.activate, request, request.path_params["code"], info)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    t = p + "/shares/{share}/schemas/{schema}/tables/{table}"
    routes = [
        Route("/health", health, methods=["GET", "HEAD"]),
        Route(p + "/shares", list_shares, methods=["GET"]),
        Route(p + "/shares/{share}", get_share, methods=["GET"]),
        Route(p + "/shares/{share}/schemas", list_schemas, methods=["GET"]),
        Route(p + "/shares/{share}/schemas/{schema}/tables", list_tables, methods=["GET"]),
        Route(p + "/shares/{share}/all-tables", list_all_tables, methods=["GET"]),
        Route(t, table_version, methods=["HEAD"]),
        Route(t + "/version", table_version, methods=["GET"]),
        Route(t + "/metadata", metadata, methods=["GET"]),
        Route(t + "/query", query, methods=["POST"]),
        Route(t + "/changes", changes, methods=["GET"]),
        Route(p + "/files/{token}", download, methods=["GET", "HEAD"]),
        Route(p + "/activation/{code}", activation, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        import anyio.to_thread

        # sync generators and SQLite calls run on worker threads: allow many concurrent clients
        anyio.to_thread.current_default_thread_limiter().total_tokens = 128
        svc.audit.start()
        threading.Thread(target=svc.warm_loop, name="sharelab-warm", daemon=True).start()
        try:
            yield
        finally:
            svc._stopping.set()
            svc.audit.stop()

    app = Starlette(routes=routes, lifespan=lifespan)

    async def on_404(request: Request, exc: Exception) -> Response:
        return error_response(not_found(f"No such endpoint: {request.method} {request.url.path}"))

    async def on_405(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {
                "errorCode": "INVALID_PARAMETER_VALUE",
                "message": f"Method {request.method} is not allowed here",
            },
            status_code=405,
        )

    app.add_exception_handler(404, on_404)
    app.add_exception_handler(405, on_405)
    app.state.service = svc
    return app


# ======================================================================================== lifecycle
def _lab_home(home: Any) -> Any:
    from helpers.home import LabHome

    return home if isinstance(home, LabHome) else LabHome.resolve(home)


def _state_paths(lab: Any) -> tuple[Path, Path, Path, Path]:
    d = lab.server_dir
    return d / "server.json", d / "server.pid", d / "server.log", d / "server.lock"


def _normalize_public_url(public_url: str | None) -> str | None:
    if not public_url:
        return None
    url = public_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidArgumentError(
            f"--public-url {public_url!r} must start with http:// or https:// (e.g. http://lab:8080)"
        )
    if url.endswith(DEFAULT_PREFIX):
        url = url[: -len(DEFAULT_PREFIX)]
    return url


def serve(
    home: Any = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    public_url: str | None = None,
) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (one server per lab home).

    :raises ServerError: another server runs on this lab home, or the port is in use.
    """
    import fcntl

    import uvicorn

    lab = _lab_home(home)
    public_url = _normalize_public_url(public_url)
    state_file, pid_file, _log_file, lock_file = _state_paths(lab)
    lab.server_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        running = lab.server_state() or {}
        raise ServerError(
            f"A sharing server is already running for lab home {lab.path} "
            f"(pid {running.get('pid', '?')}, {running.get('endpoint', 'unknown endpoint')}); "
            "stop it with `sharelab stop` or use another --home"
        ) from None
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto is TCP;
    # with proto 0, Nagle + the client's delayed ACK add ~40 ms to every keep-alive response with a body.
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        os.close(lock_fd)
        raise ServerError(
            f"Cannot listen on {host}:{port} ({exc.strerror}); pick another port with --port or stop "
            "whatever uses it"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    actual_port = sock.getsockname()[1]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = public_url or f"http://{shown_host}:{actual_port}"
    state = {
        "pid": os.getpid(),
        "host": host,
        "port": actual_port,
        "public_url": public_url,
        "endpoint": f"{base}{DEFAULT_PREFIX}/",
        "started_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "version": __version__,
    }
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(lab, public_url=public_url)
        _write_json(state_file, state)
        pid_file.write_text(f"{os.getpid()}\n")
        config = uvicorn.Config(
            app,
            http="h11",
            loop="asyncio",
            lifespan="on",
            timeout_keep_alive=30,
            access_log=False,
            log_level="info",
            backlog=2048,
        )
        server = uvicorn.Server(config)
        # uvicorn re-raises a captured SIGTERM once it has shut down; with the default handler the process
        # would die before the ``finally`` below removes server.json (stale state, pid reuse in containers)
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        print(
            f"sharelab server for {lab.path} listening on {base} (endpoint {state['endpoint']})",
            flush=True,
        )
        server.run(sockets=[sock])
    finally:
        sock.close()
        _cleanup_state(lab, os.getpid())
        os.close(lock_fd)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _cleanup_state(lab: Any, pid: int | None) -> None:
    """Remove ``server.json``/``server.pid`` if they belong to ``pid`` (any owner when ``pid`` is None)."""
    state_file, pid_file, _, _ = _state_paths(lab)
    try:
        current = json.loads(state_file.read_text()).get("pid")
    except (OSError, ValueError):
        current = None
    if pid is None or current in (pid, None):
        for f in (state_file, pid_file):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def _healthy(host: str, port: int, timeout: float = 1.0) -> bool:
    import urllib.request

    h = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in h:
        h = f"[{h}]"
    try:
        with urllib.request.urlopen(f"http://{h}:{port}/health", timeout=timeout) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


def _lock_held(lab: Any) -> bool:
    """Whether a server process holds this lab home's ``server/server.lock`` (i.e. really runs)."""
    return lab.server_lock_held()


def _running_state(lab: Any) -> dict[str, Any] | None:
    """``server.json`` of the server that holds the lock, or None (stale state files are removed)."""
    state = lab.server_state()
    if not _lock_held(lab):
        if state is not None or (lab.server_dir / "server.json").exists():
            _cleanup_state(lab, None)
        return None
    return state


def status(home: Any = None) -> dict[str, Any] | None:
    """The running server's state (``server.json`` plus ``healthy``), or None when none runs."""
    lab = _lab_home(home)
    state = _running_state(lab)
    if state is None:
        return None
    state = dict(state)
    state["healthy"] = _healthy(str(state.get("host")), int(state.get("port", 0)))
    return state


def start(
    home: Any = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    public_url: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Start the server in the background (idempotent) and wait until ``/health`` answers.

    :returns: the server state (``server/server.json``).
    :raises ServerError: it could not start (the message quotes the end of ``server/server.log``).
    """
    lab = _lab_home(home)
    public_url = _normalize_public_url(public_url)
    existing = status(lab)
    if existing is not None:
        if int(existing.get("port", -1)) != int(port) and port != 0:
            log.info("a server already runs for this home on port %s", existing.get("port"))
        existing["already_running"] = True
        return existing
    lab.server_dir.mkdir(parents=True, exist_ok=True)
    _, _, log_file, _ = _state_paths(lab)
    cmd = [
        sys.executable,
        "-m",
        "helpers",
        "--home",
        str(lab.path),
        "serve",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if public_url:
        cmd += ["--public-url", public_url]
    env = dict(os.environ, PYTHONUNBUFFERED="1", SHARELAB_HOME=str(lab.path))
    repo = Path(__file__).resolve().parent.parent
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=str(repo),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = _tail(log_file)
            raise ServerError(f"The sharing server exited with code {code} during start-up: {tail}")
        state = lab.server_state()
        if (
            state
            and state.get("pid") == proc.pid
            and _healthy(host, int(state["port"]), timeout=0.5)
        ):
            state = dict(state)
            state["healthy"] = True
            state["already_running"] = False
            return state
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    raise ServerError(
        f"The sharing server did not answer /health within {timeout:.0f}s; see {log_file}: {_tail(log_file)}"
    )


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])


def stop(home: Any = None, timeout: float = 15.0) -> bool:
    """Stop this lab home's background server; False when none was running."""
    lab = _lab_home(home)
    state = _running_state(lab)
    if state is None:  # nothing runs (a stale server.json naming a reused pid is never signalled)
        return False
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _cleanup_state(lab, pid)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _lock_held(lab) and not _alive(pid):
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _cleanup_state(lab, pid)
    return True


def _alive(pid: int) -> bool:
    try:
        import psutil

        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


# ======================================================================================== CLI
def register_cli(subparsers: Any) -> None:
    """Add ``serve``, ``start``, ``stop`` and ``status`` to the ``sharelab`` command."""

    def add_bind(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
        p.add_argument(
            "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
        )
        p.add_argument(
            "--public-url",
            default=None,
            metavar="URL",
            help="base URL recipients use, written into profiles (e.g. http://lab:8080); default: http://HOST:PORT",
        )

    p = subparsers.add_parser("serve", help="run the Delta Sharing server in the foreground")
    add_bind(p)
    p.set_defaults(func=lambda a: serve(a.home, a.host, a.port, a.public_url) or 0)

    p = subparsers.add_parser("start", help="start the Delta Sharing server in the background")
    add_bind(p)

    def do_start(a: argparse.Namespace) -> int:
        state = start(a.home, a.host, a.port, a.public_url)
        word = "already running" if state.get("already_running") else "started"
        print(f"server {word}: pid {state['pid']}, endpoint {state['endpoint']}")
        return 0

    p.set_defaults(func=do_start)

    p = subparsers.add_parser("stop", help="stop the background Delta Sharing server")

    def do_stop(a: argparse.Namespace) -> int:
        print("server stopped" if stop(a.home) else "no server was running")
        return 0

    p.set_defaults(func=do_stop)

    p = subparsers.add_parser("status", help="show the Delta Sharing server's state")
    p.add_argument("--json", action="store_true", help="print the state as JSON")

    def do_status(a: argparse.Namespace) -> int:
        state = status(a.home)
        if a.json:
            print(json.dumps(state))
        elif state is None:
            print("no server running")
        else:
            health = "healthy" if state.get("healthy") else "not answering"
            print(f"server running: pid {state['pid']}, endpoint {state['endpoint']} ({health})")
        return 0

    p.set_defaults(func=do_status)
