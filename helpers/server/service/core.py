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
from helpers.catalog.names import name_key
from helpers.catalog.watch import start_watch, stop_watch
from helpers.exceptions import InvalidNameError, NotFoundError
from helpers.home import LabHome
from helpers.server.audit import AuditInfo, AuditWriter
from helpers.server.cluster import make_throttle, signing_key_path
from helpers.server.dv import dv_paths
from helpers.server.errors import ApiError, bad_request, not_found
from helpers.server.limits import DEFAULT_PREFIX, DEFAULT_URL_TTL_SECONDS, ServerLimits
from helpers.server.ndjson import EntrySet
from helpers.server.params import int_param
from helpers.server.pinned import pinned
from helpers.server.protocol import MetadataLine, ProtocolLine, dumps, ndjson
from helpers.server.securelink import SecureLinks
from helpers.server.service.entries import FileEntryCache
from helpers.server.signing import FileRef, Signer, load_or_create_key
from helpers.server.throttle import FailureThrottle
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
        limits: ServerLimits | None = None,
    ) -> None:
        self.home = home if isinstance(home, LabHome) else LabHome.resolve(home)
        self.limits = limits or ServerLimits()
        self.catalog = open_catalog(self.home)
        # in memory, or in the catalog when several workers / replicas must share it (server.cluster)
        self.throttle: FailureThrottle = make_throttle(
            self.catalog.db, self.limits.auth_failure_burst, self.limits.auth_failure_rate
        )
        self.public_url = public_url.rstrip("/") if public_url else None
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.url_ttl_ms = int(url_ttl_seconds * 1000)
        key = load_or_create_key(signing_key_path(self.home))
        self.signer = Signer(key)
        # behind nginx: links it checks itself (server.securelink)
        self.secure_links = SecureLinks.from_env(key)
        self.audit = AuditWriter(
            self.catalog,
            retention_days=self.limits.audit_retention_days,
            journal_dir=self.home.server_dir,  # rows durable in a journal before each answer
        )
        self.entries = FileEntryCache(self.signer.token_path)
        self._table_cache: dict[tuple[str, str, str], tuple[float, SharedTable]] = {}
        self._dv_cache: dict[tuple[str, int], tuple[Snapshot, set[str]]] = {}
        self._stopping = threading.Event()

    # -------------------------------------------------------------- auth and lookups
    def authenticate(self, request: Request, info: AuditInfo | None = None) -> Recipient:
        """The recipient of the request's live bearer token, else a 401.

        A known but expired, rotated or revoked token names its recipient in ``info`` (the audit row);
        the request's token id is kept in ``request.state.token_id`` (access stamps).
        """
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "UNAUTHENTICATED",
                "Missing bearer token; send 'Authorization: Bearer <token>' "
                "(the bearerToken of your profile file)",
            )
        found = self.catalog.token_status(token.strip())
        if found is None or found.state != "live":
            if found is not None and info is not None:
                info.recipient = found.recipient.name
            state = {"expired": "has expired", "revoked": "was revoked"}.get(
                found.state if found else "", "is unknown"
            )
            raise ApiError(
                401,
                "UNAUTHENTICATED",
                f"The bearer token {state}; ask the provider for a new profile",
            )
        request.state.token_id = found.token_id
        return found.recipient

    def granted_share(self, recipient: Recipient, share: str) -> Share:
        """The granted share named ``share`` under the catalog's one name rule (:func:`name_key`)."""
        key = name_key(share) if isinstance(share, str) else ""
        found = [
            s for s in self.catalog.recipient_shares(recipient.name) if name_key(s.name) == key
        ]
        if len(found) > 1:  # an older catalog with colliding names: only the exact spelling
            found = [s for s in found if s.name == share]
        if len(found) == 1:
            return found[0]
        raise not_found(f"Share '{share}' does not exist or is not shared with you")

    def shared_table(
        self, recipient: Recipient, share: str, schema: str, table: str
    ) -> SharedTable:
        # the table is looked up in the very share the grant check found (never by the name again)
        granted = self.granted_share(recipient, share)
        try:
            return self.catalog.get_shared_table(granted.name, schema, table)
        except (NotFoundError, InvalidNameError):
            raise not_found(f"Table '{share}.{schema}.{table}' does not exist") from None

    # -------------------------------------------------------------- deletion vectors
    def is_dv_file(self, log_: DeltaLog, version: int, path: str) -> bool:
        """Whether ``path`` is the deletion vector file of a file of ``version`` (or of its commit)."""
        snapshot = log_.snapshot(version)
        key = (log_.location, version)
        cached = self._dv_cache.get(key)
        if cached is None or cached[0] is not snapshot:
            commit = log_.commit(version)
            cached = (snapshot, dv_paths([*snapshot.files, *commit.adds, *commit.removes]))
            self._dv_cache[key] = cached
            while len(self._dv_cache) > 16:
                self._dv_cache.pop(next(iter(self._dv_cache)))
        return path in cached[1]

    def dv_signer(
        self, table: SharedTable, version: int, base: str, exp: int, identity: str
    ) -> Callable[[str], str]:
        """DV file path -> its signed download URL (for :func:`helpers.server.dv.with_signed_dv`)."""

        def sign(path: str) -> str:
            return self.file_url(base, self.file_token(table, version, path), exp, identity)

        return sign

    # -------------------------------------------------------------- access stamps
    def url_identity(self, request: Request, recipient: Recipient, table: SharedTable) -> str:
        """What signed URLs and tokens minted for this request carry: the recipient's name (audit) and
        its access key ``<token id>.<access stamp>`` (:meth:`Catalog.access_stamp`), newline-separated."""
        token_id = getattr(request.state, "token_id", "")
        stamp = (
            self.catalog.access_stamp(token_id, table.share, table.schema, table.name)
            if token_id
            else None
        )
        return f"{recipient.name}\n{token_id}.{stamp}" if stamp else recipient.name

    def access_current(self, identity: str, share: str, schema: str, table: str) -> bool:
        """Whether the access an identity of :meth:`url_identity` was minted with still holds."""
        _name, _, key = identity.partition("\n")
        token_id, _, stamp = key.partition(".")
        if not token_id or not stamp:
            return False
        return self.catalog.access_stamp(token_id, share, schema, table) == stamp

    def check_binding(self, payload: dict[str, Any], table: SharedTable, what: str) -> None:
        """A 400 unless the page/refresh token ``payload`` was minted under the current access."""
        if not self.access_current(
            str(payload.get("a", "")), table.share, table.schema, table.name
        ):
            raise bad_request(
                f"invalid '{what}': access to this table changed since it was issued (token or grant "
                "revoked, table removed or re-added, partition filter changed); query again without it"
            )

    def cached_shared_table(self, share: str, schema: str, table: str) -> SharedTable:
        """:meth:`Catalog.get_shared_table`, remembered for 2 s (downloads come in bursts per table)."""
        key = (name_key(share), name_key(schema), name_key(table))
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
        return pinned(
            get_log(location), table.pinned_version
        )  # a published version: served up to it

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
        """URL expiry: now + TTL, rounded up to a step of a minute (or of the TTL when it is shorter).

        Rounding makes every URL minted within the same step identical, so rendered file lines are
        reused across requests (a warm ``/query`` of a 10,000-file table only joins cached strings);
        a short TTL (a lesson's expiry demo) keeps a step close to itself.
        """
        step = min(_EXPIRY_STEP_MS, max(1000, self.url_ttl_ms))
        raw = int(time.time() * 1000) + self.url_ttl_ms
        return -(-raw // step) * step

    def direct_links(self, recipient: Recipient) -> bool:
        """Whether ``recipient``'s files get links nginx checks itself (:mod:`helpers.server.securelink`)."""
        return self.secure_links is not None

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

    def read_page_token(
        self, table: SharedTable, token: str, checksum: str, identity: str | None = None
    ) -> dict[str, Any]:
        """The payload of a ``pageToken`` issued for this table and query (else a 400).

        :param identity: the request's :meth:`url_identity`; the token must have been minted for the same
            recipient, under an access that still holds.
        """
        payload = self.signer.read_token("page", token, "pageToken")
        if payload.get("t") != table.id or payload.get("c") != checksum:
            raise bad_request("invalid 'pageToken': it was issued for another table or query")
        if identity is not None:
            if str(payload.get("a", "")).partition("\n")[0] != identity.partition("\n")[0]:
                raise bad_request("invalid 'pageToken': it was issued to another recipient")
            self.check_binding(payload, table, "pageToken")
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
        visible: tuple[int, int] | None = None,
    ) -> list[str]:
        """The protocol and metaData lines; ``visible`` = (bytes, files) the recipient may see (its
        partition filter), else the whole snapshot's."""
        size, count = visible if visible is not None else (snapshot.size, len(snapshot.files))
        return [
            ndjson(ProtocolLine(fmt, snapshot.protocol).to_json()),
            ndjson(
                MetadataLine(
                    fmt,
                    snapshot.metadata,
                    self.table_config(table, snapshot),
                    version=version_field,
                    size=size if with_size else None,
                    num_files=count if with_size else None,
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
        start_watch(self.catalog.db)  # PostgreSQL: the access generation without a round trip
        threading.Thread(target=self.warm_loop, name="sharelab-warm", daemon=True).start()

    def shutdown(self) -> None:
        """Stop the warm-up loop and flush the audit writer (the app's lifespan end)."""
        self._stopping.set()
        stop_watch(self.catalog.db)
        self.audit.stop()
