"""The core of the sharing service: authentication, table lookups, URLs and the lines every response shares.

:class:`ServiceCore` holds the state of one server (catalog, signer, audit writer, caches); the
discovery, query and change-feed parts of :class:`~helpers.server.service.SharingService` build on it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from helpers.catalog import Recipient, Share, SharedTable, open_catalog
from helpers.exceptions import InvalidNameError, NotFoundError
from helpers.home import LabHome
from helpers.server.audit import AuditWriter
from helpers.server.errors import ApiError, bad_request, not_found
from helpers.server.limits import DEFAULT_PREFIX, DEFAULT_URL_TTL_SECONDS
from helpers.server.ndjson import EntrySet
from helpers.server.params import int_param
from helpers.server.protocol import MetadataLine, ProtocolLine, dumps, ndjson
from helpers.server.service.entries import FileEntryCache
from helpers.server.signing import FileRef, Signer, load_or_create_key
from helpers.storage.delta_log import (
    DeltaLog,
    ObjectStoreDeltaLog,
    Snapshot,
    get_log,
    parse_timestamp,
)
from helpers.storage.s3 import MAX_EXPIRES_SECONDS, is_s3, presign_get

__all__ = ["ServiceCore"]

log = logging.getLogger("sharelab.server")

_EXPIRY_STEP_MS = 60_000
_WARM_MIN_FILES = 1000


class ServiceCore:
    """The protocol logic shared by every route; the Starlette routes are thin wrappers around it.

    :param home: lab home (path or :class:`~helpers.home.LabHome`; default: resolved as usual).
    :param public_url: base URL recipients use; default: the request's own.
    :param prefix: the protocol prefix.
    :param url_ttl_seconds: lifetime of signed file URLs.
    """

    def __init__(
        self,
        home: LabHome | str | os.PathLike[str] | None,
        public_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        url_ttl_seconds: int = DEFAULT_URL_TTL_SECONDS,
    ) -> None:
        self.home = home if isinstance(home, LabHome) else LabHome.resolve(home)
        self.catalog = open_catalog(self.home)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.url_ttl_ms = int(url_ttl_seconds * 1000)
        self.signer = Signer(load_or_create_key(self.home.server_dir / "secret.key"))
        self.audit = AuditWriter(self.catalog)
        self.entries = FileEntryCache(self.signer.token_path)
        self._table_cache: dict[tuple[str, str, str], tuple[float, SharedTable]] = {}
        self._stopping = threading.Event()

    # -------------------------------------------------------------- auth and lookups
    def authenticate(self, request: Request) -> Recipient:
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

    def granted_share(self, recipient: Recipient, share: str) -> Share:
        for s in self.catalog.recipient_shares(recipient.name):
            if s.name.lower() == share.lower():
                return s
        raise not_found(f"Share '{share}' does not exist or is not shared with you")

    def shared_table(
        self, recipient: Recipient, share: str, schema: str, table: str
    ) -> SharedTable:
        self.granted_share(recipient, share)
        try:
            return self.catalog.get_shared_table(share, schema, table)
        except (NotFoundError, InvalidNameError):
            raise not_found(f"Table '{share}.{schema}.{table}' does not exist") from None

    def cached_shared_table(self, share: str, schema: str, table: str) -> SharedTable:
        """:meth:`Catalog.get_shared_table`, remembered for 2 s (downloads come in bursts per table)."""
        key = (share.lower(), schema.lower(), table.lower())
        now = time.monotonic()
        cached = self._table_cache.get(key)
        if cached is not None and now - cached[0] < 2.0:
            return cached[1]
        found = self.catalog.get_shared_table(share, schema, table)
        self._table_cache[key] = (now, found)
        return found

    def table_log(self, table: SharedTable) -> DeltaLog:
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

    def file_entries(
        self, table: SharedTable, snapshot: Snapshot, log_: DeltaLog, fmt: str, time_travel: bool
    ) -> EntrySet:
        """(add, line template, path part of the file token) for every active file of a snapshot, cached."""
        return self.entries.get(table, snapshot, log_, fmt, time_travel)

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

    def file_token(self, table: SharedTable, version: int, path: str) -> str:
        return self.signer.file_token(
            FileRef(table.id, version, path, table.share, table.schema, table.name)
        )

    def read_page_token(self, table: SharedTable, token: str, checksum: str) -> dict[str, Any]:
        """The payload of a ``pageToken`` issued for this table and query (else a 400)."""
        payload = self.signer.read_token("page", token, "pageToken")
        if payload.get("t") != table.id or payload.get("c") != checksum:
            raise bad_request("invalid 'pageToken': it was issued for another table or query")
        return payload

    # -------------------------------------------------------------- versions and head lines
    def history_version(
        self, table: SharedTable, log_: DeltaLog, version: object, timestamp: object
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
            v = int_param(version, "version")
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
        self.check_start_version(table, v)
        return v, True

    @staticmethod
    def check_start_version(table: SharedTable, version: int) -> None:
        start = getattr(table, "start_version", None)
        if start is not None and version < start:
            raise bad_request(
                f"You can only query table data since version {start} (the share's start version)"
            )

    @staticmethod
    def table_config(table: SharedTable, snapshot: Snapshot) -> dict[str, str]:
        return {"enableChangeDataFeed": "true"} if table.history and snapshot.cdf_enabled else {}

    def head_lines(
        self,
        table: SharedTable,
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
                    self.table_config(table, snapshot),
                    version=version_field,
                    size=snapshot.size if with_size else None,
                    num_files=len(snapshot.files) if with_size else None,
                ).to_json()
            ),
        ]

    @staticmethod
    def response_headers(
        version: int, fmt: str, end_stream: bool, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        caps = f"responseformat={fmt}"
        if end_stream:
            caps += ";includeendstreamaction=true"
        headers = {"Delta-Table-Version": str(version), "delta-sharing-capabilities": caps}
        if extra:
            headers.update(extra)
        return headers

    # -------------------------------------------------------------- warm-up and shutdown
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
                        self.file_entries(table, snapshot, log_, "parquet", False)
                except Exception as exc:  # noqa: BLE001 - a broken table must not stop the others
                    log.debug("prewarm skipped %s.%s.%s: %s", *key, exc)

    def warm_loop(self, interval: float = 10.0) -> None:
        """Keep the latest snapshots warm: :meth:`prewarm` at start-up and every ``interval`` seconds."""
        while not self._stopping.is_set():
            self.prewarm()
            self._stopping.wait(interval)

    def start_background(self) -> None:
        """Start the audit writer and the warm-up thread (the app's lifespan start)."""
        self.audit.start()
        threading.Thread(target=self.warm_loop, name="sharelab-warm", daemon=True).start()

    def shutdown(self) -> None:
        """Stop the warm-up loop and flush the audit writer (the app's lifespan end)."""
        self._stopping.set()
        self.audit.stop()
