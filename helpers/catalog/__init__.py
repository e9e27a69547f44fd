"""The provider catalog: one SQLite file holding tables, shares, recipients, tokens, grants and audit events.

The catalog lives at ``<lab home>/catalog.db``; the lab home is ``sharelab --home DIR``, else
``$SHARELAB_HOME``, else ``~/.sharelab`` (see :mod:`helpers.home`).

Concurrency: the sharing server's threads and notebooks use the catalog at the same time. The file is in WAL
mode with a ``busy_timeout``; each thread has its own connection; every write is one short
``BEGIN IMMEDIATE`` transaction that is retried with backoff (up to :data:`WRITE_RETRY_SECONDS`) when SQLite
reports the database busy or locked, so "database is locked" never reaches the caller. A failed call rolls
back and leaves the catalog unchanged. Values are always bound parameters.

Names follow the Delta Sharing naming rules (at most 255 characters, no space, ``/``, control character or
DEL; schema and table names contain no ``.``) and are matched case-insensitively (``COLLATE NOCASE``) but
stored as given. SQLite's NOCASE folds ASCII letters only: ``Données`` matches ``DONNéES`` but not ``DONNÉES``.

Tokens: ``dss_`` + ``secrets.token_urlsafe(32)`` (256 bits of entropy). Only the SHA-256 hex digest and the
first 8 characters are stored; the clear token exists only in the :class:`IssuedToken` returned once. The
default lifetime is :data:`DEFAULT_TOKEN_LIFETIME_SECONDS` (30 days), overridable with the environment
variable ``SHARELAB_TOKEN_LIFETIME_SECONDS`` or per call. A recipient has at most two live tokens so that a
rotation can overlap: issuing or rotating while two are live expires the oldest at once.

``delta.`/path``` sources in shares are stored as the path itself (not registered as a provider table); such
an entry needs an explicit alias ``schema.table``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidNameError,
    NotADeltaTableError,
    NotFoundError,
    SharelabError,
    TokenError,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_TOKEN_LIFETIME_SECONDS",
    "MAX_LIVE_TOKENS",
    "SCHEMA_VERSION",
    "TOKEN_LIFETIME_ENV",
    "AUDIT_COLUMNS",
    "AuditEvent",
    "Catalog",
    "Grant",
    "IssuedToken",
    "PartitionClause",
    "Recipient",
    "Share",
    "ShareEntry",
    "SharedTable",
    "TableInfo",
    "TokenInfo",
    "default_token_lifetime",
    "hash_token",
    "parse_delta_path",
    "profile_dict",
    "validate_endpoint",
    "validate_name",
    "write_profile",
]

#: Version of the catalog's SQLite schema (``PRAGMA user_version``).
SCHEMA_VERSION = 1
#: Default token lifetime: 30 days. Override with ``$SHARELAB_TOKEN_LIFETIME_SECONDS`` or per call.
DEFAULT_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600
#: Environment variable overriding :data:`DEFAULT_TOKEN_LIFETIME_SECONDS`.
TOKEN_LIFETIME_ENV = "SHARELAB_TOKEN_LIFETIME_SECONDS"
#: Live (unexpired, unrevoked) tokens a recipient may hold at once; two lets a rotation overlap.
MAX_LIVE_TOKENS = 2
#: Prefix of every clear token (so a leaked token is recognisable by secret scanners).
TOKEN_PREFIX = "dss_"
#: Stored characters of a clear token, shown in listings to tell tokens apart.
TOKEN_PREFIX_CHARS = 8
#: How long a write keeps retrying when the database is busy before giving up.
WRITE_RETRY_SECONDS = 30.0
#: SQLite's own wait per attempt (``PRAGMA busy_timeout``), in milliseconds.
BUSY_TIMEOUT_MS = 5000
#: Longest name the Delta Sharing protocol allows.
MAX_NAME_LENGTH = 255
#: Longest token lifetime accepted (10 years); more is surely a typo.
MAX_TOKEN_LIFETIME_SECONDS = 10 * 365 * 24 * 3600

#: Columns of :meth:`Catalog.audit_frame`, in order.
AUDIT_COLUMNS = (
    "event_time",
    "recipient",
    "share",
    "schema",
    "table",
    "action",
    "version",
    "start_version",
    "end_version",
    "num_files",
    "has_predicate_hints",
    "has_limit_hint",
    "status_code",
    "user_agent",
    "client_address",
    "duration_ms",
    "response_format",
)

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_T = TypeVar("_T")


def _now() -> float:
    """Current time in epoch seconds (one function, so tests can move the clock)."""
    return time.time()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def _ts(value: datetime | float | int | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # naive datetimes are taken as UTC, like the protocol's timestamps
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def _utcnow() -> datetime:
    return datetime.fromtimestamp(_now(), tz=UTC)


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------

_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f /]")
_DELTA_PATH = re.compile(r"^\s*delta\s*\.\s*`(?P<path>[^`]+)`\s*$", re.IGNORECASE)


def validate_name(name: object, kind: str = "name", *, allow_dot: bool = True) -> str:
    """Check ``name`` against the Delta Sharing naming rules and return it unchanged.

    :param kind: what the name is ("share", "recipient", "schema", ...), used in the message.
    :param allow_dot: False for schema and table names, which may not contain ``.``.
    :raises InvalidNameError: naming the rule that was broken.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{kind} name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidNameError(
            f"{kind} name is empty; give a name of 1 to {MAX_NAME_LENGTH} characters"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"{kind} name {name[:40]!r}... is {len(name)} characters long; "
            f"Delta Sharing names have at most {MAX_NAME_LENGTH}"
        )
    bad = _BAD_NAME_CHARS.search(name)
    if bad:
        what = {" ": "a space", "/": "'/'"}.get(bad.group(), f"control character {bad.group()!r}")
        raise InvalidNameError(
            f"{kind} name {name!r} contains {what}; Delta Sharing names may not contain spaces, "
            "'/', control characters or DEL (use '_' instead)"
        )
    if not allow_dot and "." in name:
        raise InvalidNameError(
            f"{kind} name {name!r} contains '.'; schema and table names may not contain dots"
        )
    return name


def _split_name(name: object, parts: int, kind: str, example: str) -> list[str]:
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{kind} name must be a string like {example}, got {type(name).__name__}"
        )
    pieces = name.split(".")
    if len(pieces) != parts:
        raise InvalidNameError(
            f"{kind} name {name[:300]!r} must have {parts} dot-separated parts, like {example}"
        )
    labels = (
        ("catalog", "schema", "table")[-parts:] if parts < 3 else ("catalog", "schema", "table")
    )
    for piece, label in zip(pieces, labels, strict=True):
        validate_name(piece, f"{label} part of {kind}", allow_dot=False)
    return pieces


def parse_delta_path(source: str) -> str | None:
    """The path of a ``delta.`/path``` source, or None when ``source`` is not of that form."""
    match = _DELTA_PATH.match(source) if isinstance(source, str) else None
    return match.group("path") if match else None


def _normalize_location(location: str | os.PathLike[str]) -> Path:
    text = os.fspath(location)
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError("table location is empty; give the directory of a Delta table")
    if text.startswith("file://"):
        text = text[len("file://") :]
    return Path(text).expanduser().resolve()


def _require_delta(location: str | os.PathLike[str]) -> Path:
    path = _normalize_location(location)
    if not (path / "_delta_log").is_dir():
        raise NotADeltaTableError(
            f"{path} is not a Delta table (no _delta_log directory); "
            "give the directory of an existing Delta table"
        )
    return path


def _partition_columns(location: str) -> list[str]:
    from deltalake import DeltaTable

    try:
        return list(DeltaTable(location).metadata().partition_columns)
    except Exception as exc:  # deltalake raises several types; report them uniformly
        raise NotADeltaTableError(f"cannot read the Delta table at {location}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableInfo:
    """A provider table: three-part name → Delta table location."""

    name: str
    catalog: str
    schema: str
    table: str
    location: str
    registered_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TableInfo:
        return cls(
            name=row["name"],
            catalog=row["catalog"],
            schema=row["schema_name"],
            table=row["table_name"],
            location=row["location"],
            registered_at=_dt(row["registered_at"]),
        )


@dataclass(frozen=True)
class Share:
    """A share: a named set of tables granted to recipients."""

    name: str
    comment: str | None
    created_at: datetime
    id: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Share:
        return cls(
            name=row["name"],
            comment=row["comment"],
            created_at=_dt(row["created_at"]),
            id=row["id"],
        )


@dataclass(frozen=True)
class PartitionClause:
    """One clause of a partition filter: ``column = value`` or ``column = CURRENT_RECIPIENT().value``.

    :param column: a partition column of the shared table.
    :param value: the literal value, or the recipient property name when ``is_property``.
    :param is_property: True for ``CURRENT_RECIPIENT().<property>``.
    """

    column: str
    value: Any
    is_property: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "value": self.value, "is_property": self.is_property}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartitionClause:
        return cls(
            column=data["column"], value=data["value"], is_property=bool(data["is_property"])
        )

    def resolve(self, recipient: Recipient | None) -> Any:
        """The value this clause compares with for ``recipient`` (None when a property is missing)."""
        if not self.is_property:
            return self.value
        if recipient is None:
            return None
        props = {k.lower(): v for k, v in recipient.properties.items()}
        return props.get(str(self.value).lower())

    def __str__(self) -> str:
        if self.is_property:
            return f"{self.column} = CURRENT_RECIPIENT().{self.value}"
        value = self.value
        if isinstance(value, str):
            return f"{self.column} = '" + value.replace("'", "''") + "'"
        return f"{self.column} = {value!r}"


def _filter_from_json(text: str | None) -> tuple[PartitionClause, ...]:
    return tuple(PartitionClause.from_json(d) for d in json.loads(text or "[]"))


@dataclass(frozen=True)
class ShareEntry:
    """An entry of a share, as added: a table (``kind='table'``) or a whole schema (``kind='schema'``).

    ``source`` is ``catalog.schema.table``, ``catalog.schema`` or ``delta.`/path```; ``alias`` is
    ``schema.table`` for a table entry and the schema name for a schema entry.
    """

    share: str
    kind: str
    source: str
    alias: str
    comment: str | None
    history: bool
    start_version: int | None
    partition_filter: tuple[PartitionClause, ...]
    added_at: datetime
    id: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ShareEntry:
        return cls(
            share=row["share_name"],
            kind=row["kind"],
            source=row["source"],
            alias=row["alias"],
            comment=row["comment"],
            history=bool(row["history"]),
            start_version=row["start_version"],
            partition_filter=_filter_from_json(row["partition_filter"]),
            added_at=_dt(row["added_at"]),
            id=row["id"],
        )


@dataclass(frozen=True)
class SharedTable:
    """A table as a recipient sees it: ``share.schema.name``, with schema entries expanded."""

    share: str
    schema: str
    name: str
    location: str
    history: bool
    start_version: int | None
    partition_filter: tuple[PartitionClause, ...]
    id: str
    comment: str | None = None
    #: Where it comes from: ``catalog.schema.table`` or ``delta.`/path```.
    source: str = ""
    #: The share's uuid (the protocol's ``shareId``).
    share_id: str = ""


@dataclass(frozen=True)
class Recipient:
    """A data recipient; ``properties`` feed ``CURRENT_RECIPIENT().<prop>`` partition filters."""

    name: str
    comment: str | None
    properties: dict[str, str] = field(hash=False)
    created_at: datetime
    id: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Recipient:
        return cls(
            name=row["name"],
            comment=row["comment"],
            properties=dict(json.loads(row["properties"] or "{}")),
            created_at=_dt(row["created_at"]),
            id=row["id"],
        )


@dataclass(frozen=True)
class TokenInfo:
    """What the catalog knows about a token: never the token itself, only its first characters."""

    id: str
    recipient: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TokenInfo:
        return cls(
            id=row["id"],
            recipient=row["recipient_name"],
            prefix=row["prefix"],
            created_at=_dt(row["created_at"]),
            expires_at=_dt(row["expires_at"]),
            revoked_at=_dt(row["revoked_at"]),
        )

    def is_live(self, at: float | None = None) -> bool:
        """Not revoked and not expired at ``at`` (epoch seconds; default now)."""
        at = _now() if at is None else at
        return self.revoked_at is None and self.expires_at.timestamp() > at

    @property
    def status(self) -> str:
        """``'revoked'``, ``'expired'`` or ``'active'``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.is_live() else "expired"


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: the only place the clear token ever exists. Show it once."""

    token: str = field(repr=False)
    info: TokenInfo

    @property
    def expires_at(self) -> datetime:
        return self.info.expires_at


@dataclass(frozen=True)
class Grant:
    """``GRANT SELECT ON SHARE share TO RECIPIENT recipient``."""

    share: str
    recipient: str
    granted_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Grant:
        return cls(
            share=row["share_name"],
            recipient=row["recipient_name"],
            granted_at=_dt(row["granted_at"]),
        )


@dataclass(frozen=True)
class AuditEvent:
    """One request seen by the sharing server (a row of ``system.access.audit``)."""

    action: str
    event_time: datetime = field(default_factory=_utcnow)
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
    status_code: int | None = None
    user_agent: str | None = None
    client_address: str | None = None
    duration_ms: float | None = None
    response_format: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditEvent:
        return cls(
            action=row["action"],
            event_time=_dt(row["event_time"]),
            recipient=row["recipient"],
            share=row["share"],
            schema=row["schema_name"],
            table=row["table_name"],
            version=row["version"],
            start_version=row["start_version"],
            end_version=row["end_version"],
            num_files=row["num_files"],
            has_predicate_hints=bool(row["has_predicate_hints"]),
            has_limit_hint=bool(row["has_limit_hint"]),
            status_code=row["status_code"],
            user_agent=row["user_agent"],
            client_address=row["client_address"],
            duration_ms=row["duration_ms"],
            response_format=row["response_format"],
        )


# --------------------------------------------------------------------------------------------------
# Tokens and profiles
# --------------------------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token or activation code (what the catalog stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def default_token_lifetime() -> int:
    """The default token lifetime in seconds: ``$SHARELAB_TOKEN_LIFETIME_SECONDS`` or 30 days."""
    raw = os.environ.get(TOKEN_LIFETIME_ENV, "").strip()
    if not raw:
        return DEFAULT_TOKEN_LIFETIME_SECONDS
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(
            f"{TOKEN_LIFETIME_ENV}={raw!r} is not a whole number of seconds; set it to e.g. 86400 or unset it"
        ) from None
    return _check_lifetime(value, TOKEN_LIFETIME_ENV)


def _check_lifetime(value: object, what: str = "token lifetime") -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"{what} must be a number of seconds, got {value!r}")
    if not (0 < value <= MAX_TOKEN_LIFETIME_SECONDS):
        raise InvalidArgumentError(
            f"{what} must be between 1 and {MAX_TOKEN_LIFETIME_SECONDS} seconds, got {value!r}"
        )
    return value  # type: ignore[return-value]


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_endpoint(endpoint: object) -> str:
    """Return ``endpoint`` when it is an http(s) URL without spaces.

    :raises InvalidArgumentError: otherwise.
    """
    if not isinstance(endpoint, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint):
        raise InvalidArgumentError(
            f"endpoint {endpoint!r} is not an http(s) URL; give e.g. http://127.0.0.1:8080/delta-sharing/"
        )
    return endpoint


def profile_dict(endpoint: str, issued_token: IssuedToken) -> dict[str, Any]:
    """A version-1 Delta Sharing profile for ``issued_token`` (protocol §7).

    :param endpoint: the server's sharing endpoint, e.g. ``http://127.0.0.1:8080/delta-sharing/``.
    """
    validate_endpoint(endpoint)
    return {
        "shareCredentialsVersion": 1,
        "endpoint": endpoint,
        "bearerToken": issued_token.token,
        "expirationTime": _iso_z(issued_token.info.expires_at),
    }


def write_profile(path: str | os.PathLike[str], profile: Mapping[str, Any]) -> Path:
    """Write a profile file with mode 0600 (never readable by others, even briefly); return its path.

    The file is written to a temporary sibling created 0600 and renamed over ``path``.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise InvalidArgumentError(
            f"{target} is a directory; give a file name such as {target}/recipient.share"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the umask is odd; 0600 can only be narrowed by it anyway
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(profile), handle)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target.resolve()


# --------------------------------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------------------------------

_SCHEMA_V1 = """
CREATE TABLE tables (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    catalog       TEXT NOT NULL COLLATE NOCASE,
    schema_name   TEXT NOT NULL COLLATE NOCASE,
    table_name    TEXT NOT NULL COLLATE NOCASE,
    location      TEXT NOT NULL,
    registered_at REAL NOT NULL
);
CREATE INDEX tables_schema ON tables (catalog, schema_name);
CREATE TABLE shares (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    comment    TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE share_entries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    share_id         TEXT NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('table', 'schema')),
    source           TEXT NOT NULL COLLATE NOCASE,
    path             TEXT,
    alias            TEXT NOT NULL COLLATE NOCASE,
    comment          TEXT,
    history          INTEGER NOT NULL DEFAULT 0,
    start_version    INTEGER,
    partition_filter TEXT NOT NULL DEFAULT '[]',
    added_at         REAL NOT NULL,
    UNIQUE (share_id, kind, alias)
);
CREATE TABLE recipients (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    comment    TEXT,
    properties TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    prefix       TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    revoked_at   REAL
);
CREATE INDEX tokens_prefix ON tokens (prefix);
CREATE INDEX tokens_recipient ON tokens (recipient_id);
CREATE TABLE activations (
    code_hash    TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    created_at   REAL NOT NULL,
    redeemed_at  REAL
);
CREATE TABLE grants (
    share_id     TEXT NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    recipient_id TEXT NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    granted_at   REAL NOT NULL,
    PRIMARY KEY (share_id, recipient_id)
);
CREATE TABLE audit (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_time          REAL NOT NULL,
    recipient           TEXT,
    share               TEXT,
    schema_name         TEXT,
    table_name          TEXT,
    action              TEXT NOT NULL,
    version             INTEGER,
    start_version       INTEGER,
    end_version         INTEGER,
    num_files           INTEGER,
    has_predicate_hints INTEGER NOT NULL DEFAULT 0,
    has_limit_hint      INTEGER NOT NULL DEFAULT 0,
    status_code         INTEGER,
    user_agent          TEXT,
    client_address      TEXT,
    duration_ms         REAL,
    response_format     TEXT
);
CREATE INDEX audit_time ON audit (event_time);
"""


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


#: Step functions: ``_MIGRATIONS[n]`` upgrades a catalog from version n-1 to n.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_1}


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    text = str(exc).lower()
    return "locked" in text or "busy" in text


# --------------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------------

_TOKEN_SELECT = """
SELECT t.id, t.prefix, t.created_at, t.expires_at, t.revoked_at, r.name AS recipient_name
FROM tokens t JOIN recipients r ON r.id = t.recipient_id
"""
_ENTRY_SELECT = """
SELECT e.*, s.name AS share_name FROM share_entries e JOIN shares s ON s.id = e.share_id
"""
_GRANT_SELECT = """
SELECT g.granted_at, s.name AS share_name, r.name AS recipient_name
FROM grants g JOIN shares s ON s.id = g.share_id JOIN recipients r ON r.id = g.recipient_id
"""
_STABLE_NS = uuid.UUID("6f1b1c1e-5a9e-4c38-9a65-1d8a6f0c2b7d")


class Catalog:
    """The provider catalog in one SQLite file (see the module docstring for the guarantees).

    :param path: the SQLite file, or a lab home directory (then ``<dir>/catalog.db``); default: the
        catalog of :func:`helpers.home.resolve_home`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            from helpers.home import LabHome

            path = LabHome.resolve().catalog_path
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / "catalog.db"
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path: Path = p.resolve()
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:  # not a database, unreadable directory, disk full...
            self.close()
            raise SharelabError(
                f"cannot open the catalog {self.path}: {exc}; check the file and its permissions, "
                "or use another lab home (--home DIR)"
            ) from exc

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections and transactions ------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own instead of reusing the parent's)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._connect()
            self._local.conn = conn
            self._local.pid = os.getpid()
            with self._conns_lock:
                self._all_conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this object opened (in this process)."""
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    def _retry(self, fn: Callable[[], _T]) -> _T:
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    if _is_busy(exc):
                        raise SharelabError(
                            f"the catalog {self.path} stayed busy for {WRITE_RETRY_SECONDS:.0f} s; "
                            "another process holds it, try again or stop that process"
                        ) from exc
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retried as a whole while the db is busy."""
        conn = self._conn()

        def attempt() -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(attempt)

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one read transaction (a consistent snapshot under WAL)."""
        conn = self._conn()

        def attempt() -> _T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        return self._retry(attempt)

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`, one step function at a time, in one transaction."""
        conn = self._conn()
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == SCHEMA_VERSION:
            return
        if current > SCHEMA_VERSION:
            raise SharelabError(
                f"the catalog {self.path} has schema version {current}, newer than this sharelab "
                f"({SCHEMA_VERSION}); upgrade sharelab or use another --home"
            )

        def step(c: sqlite3.Connection) -> None:
            version = c.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version + 1](c)
                version += 1
                c.execute(f"PRAGMA user_version = {int(version)}")

        self._write(step)

    def schema_version(self) -> int:
        """The catalog file's ``PRAGMA user_version``."""
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    # -- lookups used inside transactions --------------------------------------------------------

    @staticmethod
    def _share_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM shares WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"share {name!r} does not exist; create it with CREATE SHARE {name}"
            )
        return row

    @staticmethod
    def _recipient_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM recipients WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"recipient {name!r} does not exist; create it with CREATE RECIPIENT {name}"
            )
        return row

    @staticmethod
    def _table_row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM tables WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"table {name!r} is not registered; generate its dataset or run "
                f"CREATE TABLE {name} LOCATION '/path/to/delta'"
            )
        return row

    # -- tables ----------------------------------------------------------------------------------

    def register_table(
        self, name: str, location: str | os.PathLike[str], *, replace: bool = False
    ) -> TableInfo:
        """Register the Delta table at ``location`` as ``catalog.schema.table``.

        :param replace: point an existing name at the new location instead of failing.
        :raises NotADeltaTableError: when ``location`` has no ``_delta_log``.
        :raises AlreadyExistsError: when the name is taken and ``replace`` is False.
        """
        cat, sch, tbl = _split_name(name, 3, "table", "catalog.schema.table")
        from helpers.storage.s3 import is_s3

        if is_s3(os.fspath(location)):
            # an S3-compatible table: its _delta_log is checked through the store (settings from the
            # environment, never stored here)
            from helpers.storage.delta_log import has_delta_log

            path = os.fspath(location).rstrip("/")
            if not has_delta_log(path):
                raise NotADeltaTableError(
                    f"{path} is not a Delta table (no _delta_log objects); write the table there first"
                )
        else:
            path = str(_require_delta(location))

        def body(conn: sqlite3.Connection) -> TableInfo:
            now = _now()
            row = conn.execute("SELECT id FROM tables WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if not replace:
                    raise AlreadyExistsError(
                        f"table {name!r} is already registered; use replace=True "
                        "(or CREATE OR REPLACE TABLE) to point it at a new location"
                    )
                conn.execute(
                    "UPDATE tables SET name = ?, catalog = ?, schema_name = ?, table_name = ?, "
                    "location = ?, registered_at = ? WHERE id = ?",
                    (name, cat, sch, tbl, path, now, row["id"]),
                )
            else:
                conn.execute(
                    "INSERT INTO tables (id, name, catalog, schema_name, table_name, location, "
                    "registered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (str(uuid.uuid4()), name, cat, sch, tbl, path, now),
                )
            return TableInfo.from_row(self._table_row(conn, name))

        return self._write(body)

    def get_table(self, name: str) -> TableInfo:
        """The registered table ``catalog.schema.table`` (case-insensitive).

        :raises NotFoundError: when it is not registered.
        """
        _split_name(name, 3, "table", "catalog.schema.table")
        return self._read(lambda conn: TableInfo.from_row(self._table_row(conn, name)))

    def list_tables(self, catalog: str | None = None, schema: str | None = None) -> list[TableInfo]:
        """Registered tables, optionally only those of ``catalog`` (and ``schema``), sorted by name."""
        sql = "SELECT * FROM tables WHERE 1 = 1"
        params: list[Any] = []
        if catalog is not None:
            sql += " AND catalog = ?"
            params.append(catalog)
        if schema is not None:
            sql += " AND schema_name = ?"
            params.append(schema)
        sql += " ORDER BY name COLLATE NOCASE"
        return self._read(lambda conn: [TableInfo.from_row(r) for r in conn.execute(sql, params)])

    def unregister_table(self, name: str, *, if_exists: bool = False) -> bool:
        """Forget a registered table (its files are left alone); True when something was removed.

        :raises InvalidArgumentError: when a share names it explicitly (remove it from the share first).
        """
        _split_name(name, 3, "table", "catalog.schema.table")

        def body(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT * FROM tables WHERE name = ?", (name,)).fetchone()
            if row is None:
                if if_exists:
                    return False
                self._table_row(conn, name)
            users = conn.execute(
                _ENTRY_SELECT + " WHERE e.kind = 'table' AND e.source = ?", (name,)
            ).fetchall()
            if users:
                where = ", ".join(f"{u['share_name']} (as {u['alias']})" for u in users)
                raise InvalidArgumentError(
                    f"table {name!r} is shared in {where}; remove it from those shares first "
                    "(ALTER SHARE s REMOVE TABLE schema.table)"
                )
            conn.execute("DELETE FROM tables WHERE id = ?", (row["id"],))
            return True

        return self._write(body)

    # -- shares ----------------------------------------------------------------------------------

    def create_share(
        self, name: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> Share:
        """Create a share; with ``if_not_exists`` an existing share is returned unchanged.

        :raises AlreadyExistsError: when it exists and ``if_not_exists`` is False.
        """
        validate_name(name, "share")
        _check_comment(comment)

        def body(conn: sqlite3.Connection) -> Share:
            row = conn.execute("SELECT * FROM shares WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if if_not_exists:
                    return Share.from_row(row)
                raise AlreadyExistsError(
                    f"share {row['name']!r} already exists; use CREATE SHARE IF NOT EXISTS or another name"
                )
            conn.execute(
                "INSERT INTO shares (id, name, comment, created_at) VALUES (?, ?, ?, ?)",
                (str(uuid.uuid4()), name, comment, _now()),
            )
            return Share.from_row(self._share_row(conn, name))

        return self._write(body)

    def drop_share(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a share with its entries and grants; True when it existed.

        :raises NotFoundError: when it does not exist and ``if_exists`` is False.
        """
        validate_name(name, "share")

        def body(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT id FROM shares WHERE name = ?", (name,)).fetchone()
            if row is None:
                if if_exists:
                    return False
                self._share_row(conn, name)
            # ON DELETE CASCADE would do it; explicit deletes keep it right even with foreign_keys off
            conn.execute("DELETE FROM share_entries WHERE share_id = ?", (row["id"],))
            conn.execute("DELETE FROM grants WHERE share_id = ?", (row["id"],))
            conn.execute("DELETE FROM shares WHERE id = ?", (row["id"],))
            return True

        return self._write(body)

    def get_share(self, name: str) -> Share:
        """The share ``name`` (case-insensitive). :raises NotFoundError:"""
        validate_name(name, "share")
        return self._read(lambda conn: Share.from_row(self._share_row(conn, name)))

    def list_shares(self) -> list[Share]:
        """Every share, sorted by name."""
        return self._read(
            lambda conn: [
                Share.from_row(r)
                for r in conn.execute("SELECT * FROM shares ORDER BY name COLLATE NOCASE")
            ]
        )

    def add_table_to_share(
        self,
        share: str,
        source: str,
        *,
        alias: str | None = None,
        comment: str | None = None,
        history: bool = False,
        partition: Iterable[PartitionClause | tuple[Any, ...]] = (),
        start_version: int | None = None,
    ) -> ShareEntry:
        """Add a table to a share (``ALTER SHARE s ADD TABLE source [COMMENT] [PARTITION] [AS alias] [WITH HISTORY]``).

        :param source: ``catalog.schema.table`` (a registered table) or ``delta.`/path``` (then ``alias`` is
            required; the path is stored, not registered).
        :param alias: ``schema.table`` the recipients see; default: the source's ``schema.table``.
        :param partition: clauses ``PartitionClause(column, value, is_property)`` or tuples
            ``(column, value[, is_property])``; columns must be partition columns of the table.
        :param start_version: first version recipients may read (history/CDF); None = all.
        :raises NotFoundError: unknown share or table. :raises AlreadyExistsError: alias taken.
        :raises InvalidArgumentError: bad partition filter or start version.
        """
        validate_name(share, "share")
        _check_comment(comment)
        if not isinstance(source, str):
            raise InvalidArgumentError(
                f"table source must be a string, got {type(source).__name__}"
            )
        clauses = _coerce_partition(partition)
        if start_version is not None and (
            isinstance(start_version, bool)
            or not isinstance(start_version, int)
            or start_version < 0
        ):
            raise InvalidArgumentError(
                f"start version must be a non-negative whole number, got {start_version!r}"
            )
        delta_path = parse_delta_path(source)
        if delta_path is not None:
            location = str(_require_delta(delta_path))
            stored_source = f"delta.`{location}`"
            if alias is None:
                raise InvalidArgumentError(
                    f"a path source needs a name for recipients: add AS schema.table to ADD TABLE {source}"
                )
        else:
            _, sch, tbl = _split_name(source, 3, "table", "catalog.schema.table")
            stored_source = source
            location = None
            if alias is None:
                alias = f"{sch}.{tbl}"
        _split_name(alias, 2, "table alias", "schema.table")

        # The Delta table is read before the transaction: keep the write lock short.
        table_location = location
        if table_location is None:
            table_location = self.get_table(source).location
        if clauses:
            _validate_partition(clauses, _partition_columns(table_location), source)
        if start_version is not None:
            _validate_start_version(start_version, table_location, source)

        def body(conn: sqlite3.Connection) -> ShareEntry:
            share_row = self._share_row(conn, share)
            if location is None:
                trow = self._table_row(conn, source)
                if trow["location"] != table_location:  # re-registered meanwhile: validate again
                    raise InvalidArgumentError(
                        f"table {source!r} changed location while being added; run the statement again"
                    )
            clash = conn.execute(
                "SELECT alias FROM share_entries WHERE share_id = ? AND kind = 'table' AND alias = ?",
                (share_row["id"], alias),
            ).fetchone()
            if clash is not None:
                raise AlreadyExistsError(
                    f"share {share_row['name']!r} already has a table {clash['alias']!r}; "
                    "choose another name with AS schema.table, or REMOVE TABLE it first"
                )
            entry_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO share_entries (id, share_id, kind, source, path, alias, comment, history, "
                "start_version, partition_filter, added_at) VALUES (?, ?, 'table', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry_id,
                    share_row["id"],
                    stored_source,
                    location,
                    alias,
                    comment,
                    int(bool(history)),
                    start_version,
                    json.dumps([c.to_json() for c in clauses]),
                    _now(),
                ),
            )
            return ShareEntry.from_row(
                conn.execute(_ENTRY_SELECT + " WHERE e.id = ?", (entry_id,)).fetchone()
            )

        return self._write(body)

    def add_schema_to_share(self, share: str, source: str, *, history: bool = False) -> ShareEntry:
        """Add a whole schema ``catalog.schema``; it also covers tables registered under it later.

        Recipients see its tables as ``<schema>.<table>``. An empty schema is accepted (its tables may be
        generated later).

        :raises NotFoundError: unknown share. :raises AlreadyExistsError: a schema of that name is shared.
        """
        validate_name(share, "share")
        _, sch = _split_name(source, 2, "schema", "catalog.schema")

        def body(conn: sqlite3.Connection) -> ShareEntry:
            share_row = self._share_row(conn, share)
            clash = conn.execute(
                "SELECT source FROM share_entries WHERE share_id = ? AND kind = 'schema' AND alias = ?",
                (share_row["id"], sch),
            ).fetchone()
            if clash is not None:
                raise AlreadyExistsError(
                    f"share {share_row['name']!r} already has schema {sch!r} (from {clash['source']}); "
                    "REMOVE SCHEMA it first"
                )
            entry_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO share_entries (id, share_id, kind, source, alias, history, added_at) "
                "VALUES (?, ?, 'schema', ?, ?, ?, ?)",
                (entry_id, share_row["id"], source, sch, int(bool(history)), _now()),
            )
            return ShareEntry.from_row(
                conn.execute(_ENTRY_SELECT + " WHERE e.id = ?", (entry_id,)).fetchone()
            )

        return self._write(body)

    def remove_table_from_share(self, share: str, alias: str) -> None:
        """Remove the table entry ``schema.table`` from a share.

        :raises NotFoundError: unknown share, or no such table entry.
        """
        validate_name(share, "share")
        _split_name(alias, 2, "table alias", "schema.table")

        def body(conn: sqlite3.Connection) -> None:
            share_row = self._share_row(conn, share)
            cur = conn.execute(
                "DELETE FROM share_entries WHERE share_id = ? AND kind = 'table' AND alias = ?",
                (share_row["id"], alias),
            )
            if cur.rowcount == 0:
                schema = alias.split(".")[0]
                covered = conn.execute(
                    "SELECT source FROM share_entries WHERE share_id = ? AND kind = 'schema' AND alias = ?",
                    (share_row["id"], schema),
                ).fetchone()
                hint = (
                    f"; it comes from schema {covered['source']}, remove that with REMOVE SCHEMA"
                    if covered
                    else "; SHOW ALL IN SHARE lists what it holds"
                )
                raise NotFoundError(f"share {share_row['name']!r} has no table {alias!r}{hint}")

        self._write(body)

    def remove_schema_from_share(self, share: str, schema: str) -> None:
        """Remove a schema entry (given as ``schema`` or ``catalog.schema``) from a share.

        :raises NotFoundError: unknown share or schema entry.
        """
        validate_name(share, "share")
        alias = schema.split(".")[-1] if isinstance(schema, str) else schema
        validate_name(alias, "schema", allow_dot=False)

        def body(conn: sqlite3.Connection) -> None:
            share_row = self._share_row(conn, share)
            cur = conn.execute(
                "DELETE FROM share_entries WHERE share_id = ? AND kind = 'schema' AND alias = ?",
                (share_row["id"], alias),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"share {share_row['name']!r} has no schema {schema!r}")

        self._write(body)

    def share_entries(self, share: str) -> list[ShareEntry]:
        """The entries of a share as added (schema entries not expanded), in the order added."""
        validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[ShareEntry]:
            row = self._share_row(conn, share)
            return [
                ShareEntry.from_row(r)
                for r in conn.execute(
                    _ENTRY_SELECT + " WHERE e.share_id = ? ORDER BY e.seq", (row["id"],)
                )
            ]

        return self._read(body)

    def _shared_tables(self, conn: sqlite3.Connection, share: str) -> list[SharedTable]:
        share_row = self._share_row(conn, share)
        found: dict[tuple[str, str], SharedTable] = {}
        entries = conn.execute(
            "SELECT * FROM share_entries WHERE share_id = ? ORDER BY seq", (share_row["id"],)
        ).fetchall()
        # Schema entries first, then explicit table entries, which win on a name clash.
        for entry in sorted(entries, key=lambda e: (e["kind"] != "schema", e["seq"])):
            if entry["kind"] == "schema":
                cat, sch = entry["source"].split(".")
                for t in conn.execute(
                    "SELECT * FROM tables WHERE catalog = ? AND schema_name = ? ORDER BY table_name COLLATE NOCASE",
                    (cat, sch),
                ):
                    key = (entry["alias"].lower(), t["table_name"].lower())
                    found[key] = SharedTable(
                        share=share_row["name"],
                        schema=entry["alias"],
                        name=t["table_name"],
                        location=t["location"],
                        history=bool(entry["history"]),
                        start_version=None,
                        partition_filter=(),
                        id=_stable_id(share_row["id"], entry["alias"], t["table_name"]),
                        comment=None,
                        source=t["name"],
                        share_id=share_row["id"],
                    )
            else:
                location = entry["path"]
                if location is None:
                    t = conn.execute(
                        "SELECT location FROM tables WHERE name = ?", (entry["source"],)
                    ).fetchone()
                    if t is None:  # unregistered behind our back (unregister_table refuses this)
                        continue
                    location = t["location"]
                sch, tbl = entry["alias"].split(".")
                found[(sch.lower(), tbl.lower())] = SharedTable(
                    share=share_row["name"],
                    schema=sch,
                    name=tbl,
                    location=location,
                    history=bool(entry["history"]),
                    start_version=entry["start_version"],
                    partition_filter=_filter_from_json(entry["partition_filter"]),
                    id=_stable_id(share_row["id"], sch, tbl),
                    comment=entry["comment"],
                    source=entry["source"],
                    share_id=share_row["id"],
                )
        return sorted(found.values(), key=lambda t: (t.schema.lower(), t.name.lower()))

    def shared_tables(self, share: str) -> list[SharedTable]:
        """The tables recipients of ``share`` see, schema entries expanded over the tables registered now.

        Sorted by schema then table name. :raises NotFoundError: unknown share.
        """
        validate_name(share, "share")
        return self._read(lambda conn: self._shared_tables(conn, share))

    def shared_schemas(self, share: str) -> list[str]:
        """Schema names of a share: those of schema entries (even empty ones) and of its tables."""
        validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[str]:
            share_row = self._share_row(conn, share)
            names = {t.schema.lower(): t.schema for t in self._shared_tables(conn, share)}
            for r in conn.execute(
                "SELECT alias FROM share_entries WHERE share_id = ? AND kind = 'schema'",
                (share_row["id"],),
            ):
                names.setdefault(r["alias"].lower(), r["alias"])
            return sorted(names.values(), key=str.lower)

        return self._read(body)

    def get_shared_table(self, share: str, schema: str, table: str) -> SharedTable:
        """One shared table by ``share``/``schema``/``table`` (case-insensitive).

        :raises NotFoundError: unknown share, schema or table.
        """
        validate_name(share, "share")
        for table_info in self.shared_tables(share):
            if (
                table_info.schema.lower() == str(schema).lower()
                and table_info.name.lower() == str(table).lower()
            ):
                return table_info
        raise NotFoundError(f"share {share!r} has no table {schema}.{table}")

    # -- recipients ------------------------------------------------------------------------------

    def create_recipient(
        self,
        name: str,
        comment: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> Recipient:
        """Create a recipient (no token yet: see :meth:`create_activation` and :meth:`issue_token`).

        :raises AlreadyExistsError: when it exists and ``if_not_exists`` is False.
        """
        validate_name(name, "recipient")
        _check_comment(comment)
        props = _coerce_properties(properties)

        def body(conn: sqlite3.Connection) -> Recipient:
            row = conn.execute("SELECT * FROM recipients WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if if_not_exists:
                    return Recipient.from_row(row)
                raise AlreadyExistsError(
                    f"recipient {row['name']!r} already exists; use CREATE RECIPIENT IF NOT EXISTS or another name"
                )
            conn.execute(
                "INSERT INTO recipients (id, name, comment, properties, created_at) VALUES (?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), name, comment, json.dumps(props), _now()),
            )
            return Recipient.from_row(self._recipient_row(conn, name))

        return self._write(body)

    def set_recipient_properties(self, name: str, properties: Mapping[str, Any]) -> Recipient:
        """Set (add or overwrite) properties of a recipient; other properties are kept.

        Keys match case-insensitively: setting ``Region`` replaces ``region``. A value of None removes the key.
        """
        validate_name(name, "recipient")
        if not isinstance(properties, Mapping):
            raise InvalidArgumentError("recipient properties must be a mapping of names to values")
        updates = {str(k): v for k, v in properties.items()}
        _coerce_properties({k: v for k, v in updates.items() if v is not None})

        def body(conn: sqlite3.Connection) -> Recipient:
            row = self._recipient_row(conn, name)
            current: dict[str, str] = json.loads(row["properties"] or "{}")
            for key, value in updates.items():
                for old in [k for k in current if k.lower() == key.lower()]:
                    del current[old]
                if value is not None:
                    current[key] = str(value)
            conn.execute(
                "UPDATE recipients SET properties = ? WHERE id = ?",
                (json.dumps(current), row["id"]),
            )
            return Recipient.from_row(self._recipient_row(conn, name))

        return self._write(body)

    def drop_recipient(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a recipient with its tokens, activation codes and grants (audit rows stay)."""
        validate_name(name, "recipient")

        def body(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT id FROM recipients WHERE name = ?", (name,)).fetchone()
            if row is None:
                if if_exists:
                    return False
                self._recipient_row(conn, name)
            for tbl in ("tokens", "activations", "grants"):
                conn.execute(f"DELETE FROM {tbl} WHERE recipient_id = ?", (row["id"],))
            conn.execute("DELETE FROM recipients WHERE id = ?", (row["id"],))
            return True

        return self._write(body)

    def get_recipient(self, name: str) -> Recipient:
        """The recipient ``name`` (case-insensitive). :raises NotFoundError:"""
        validate_name(name, "recipient")
        return self._read(lambda conn: Recipient.from_row(self._recipient_row(conn, name)))

    def list_recipients(self) -> list[Recipient]:
        """Every recipient, sorted by name."""
        return self._read(
            lambda conn: [
                Recipient.from_row(r)
                for r in conn.execute("SELECT * FROM recipients ORDER BY name COLLATE NOCASE")
            ]
        )

    # -- tokens ----------------------------------------------------------------------------------

    def _insert_token(
        self,
        conn: sqlite3.Connection,
        recipient_row: sqlite3.Row,
        lifetime: float,
        keep_old_until: float | None,
    ) -> IssuedToken:
        """Issue a token; older live tokens: keep the newest one (until ``keep_old_until`` if given), expire the rest."""
        now = _now()
        live = conn.execute(
            "SELECT id, expires_at FROM tokens WHERE recipient_id = ? AND revoked_at IS NULL "
            "AND expires_at > ? ORDER BY created_at DESC, rowid DESC",
            (recipient_row["id"], now),
        ).fetchall()
        keep = MAX_LIVE_TOKENS - 1
        for i, tok in enumerate(live):
            if i >= keep:
                new_exp = now
            elif keep_old_until is not None:
                new_exp = min(tok["expires_at"], keep_old_until)
            else:
                continue
            conn.execute("UPDATE tokens SET expires_at = ? WHERE id = ?", (new_exp, tok["id"]))
        clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO tokens (id, recipient_id, prefix, token_hash, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                token_id,
                recipient_row["id"],
                clear[:TOKEN_PREFIX_CHARS],
                hash_token(clear),
                now,
                now + lifetime,
            ),
        )
        info = TokenInfo.from_row(
            conn.execute(_TOKEN_SELECT + " WHERE t.id = ?", (token_id,)).fetchone()
        )
        return IssuedToken(token=clear, info=info)

    def issue_token(self, recipient: str, lifetime_seconds: float | None = None) -> IssuedToken:
        """Issue a new token for ``recipient`` (the clear token is only in the result).

        At most :data:`MAX_LIVE_TOKENS` are live: when two are live already, the oldest expires now.

        :param lifetime_seconds: default :func:`default_token_lifetime` (30 days or the env override).
        """
        validate_name(recipient, "recipient")
        lifetime = (
            default_token_lifetime()
            if lifetime_seconds is None
            else _check_lifetime(lifetime_seconds)
        )
        return self._write(
            lambda conn: self._insert_token(
                conn, self._recipient_row(conn, recipient), lifetime, None
            )
        )

    def rotate_token(
        self,
        recipient: str,
        expire_existing_in_seconds: float = 0,
        *,
        lifetime_seconds: float | None = None,
    ) -> IssuedToken:
        """Issue a new token and make the old live one expire in ``expire_existing_in_seconds`` (0 = now).

        Like Databricks' ``ALTER RECIPIENT ... ROTATE TOKEN``: the old token keeps working for the overlap so
        recipients can switch. If two tokens are live already, the oldest expires immediately.
        """
        validate_name(recipient, "recipient")
        if (
            isinstance(expire_existing_in_seconds, bool)
            or not isinstance(expire_existing_in_seconds, int | float)
            or expire_existing_in_seconds < 0
        ):
            raise InvalidArgumentError(
                f"expire-existing time must be a non-negative number of seconds, got {expire_existing_in_seconds!r}"
            )
        lifetime = (
            default_token_lifetime()
            if lifetime_seconds is None
            else _check_lifetime(lifetime_seconds)
        )

        def body(conn: sqlite3.Connection) -> IssuedToken:
            row = self._recipient_row(conn, recipient)
            return self._insert_token(conn, row, lifetime, _now() + expire_existing_in_seconds)

        return self._write(body)

    def revoke_tokens(self, recipient: str) -> int:
        """Revoke every live token of ``recipient`` at once; returns how many were revoked.

        Expired tokens keep the status ``expired`` (they cannot come back: expiry is never extended).
        """
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> int:
            row = self._recipient_row(conn, recipient)
            now = _now()
            cur = conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE recipient_id = ? AND revoked_at IS NULL "
                "AND expires_at > ?",
                (now, row["id"], now),
            )
            return cur.rowcount

        return self._write(body)

    def list_tokens(self, recipient: str) -> list[TokenInfo]:
        """Every token of ``recipient`` (live, expired and revoked), oldest first."""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> list[TokenInfo]:
            row = self._recipient_row(conn, recipient)
            return [
                TokenInfo.from_row(r)
                for r in conn.execute(
                    _TOKEN_SELECT + " WHERE t.recipient_id = ? ORDER BY t.created_at, t.rowid",
                    (row["id"],),
                )
            ]

        return self._read(body)

    def authenticate(self, token: str | None) -> Recipient | None:
        """The recipient owning the live token ``token``, or None (unknown, expired, revoked or malformed)."""
        if not token or not isinstance(token, str) or len(token) > 512:
            return None
        digest = hash_token(token)
        prefix = token[:TOKEN_PREFIX_CHARS]

        def body(conn: sqlite3.Connection) -> Recipient | None:
            now = _now()
            match = None
            for cand in conn.execute(
                "SELECT token_hash, recipient_id, expires_at, revoked_at FROM tokens WHERE prefix = ?",
                (prefix,),
            ):
                if hmac.compare_digest(cand["token_hash"], digest):
                    match = cand
            if match is None or match["revoked_at"] is not None or not match["expires_at"] > now:
                return None
            row = conn.execute(
                "SELECT * FROM recipients WHERE id = ?", (match["recipient_id"],)
            ).fetchone()
            return Recipient.from_row(row) if row else None

        return self._read(body)

    # -- activation ------------------------------------------------------------------------------

    def create_activation(self, recipient: str) -> str:
        """A new one-time activation code for ``recipient`` (earlier unredeemed codes stop working).

        Only its hash is stored; the sharing server serves ``/delta-sharing/activation/<code>``.
        """
        validate_name(recipient, "recipient")
        code = secrets.token_urlsafe(24)

        def body(conn: sqlite3.Connection) -> str:
            row = self._recipient_row(conn, recipient)
            conn.execute(
                "DELETE FROM activations WHERE recipient_id = ? AND redeemed_at IS NULL",
                (row["id"],),
            )
            conn.execute(
                "INSERT INTO activations (code_hash, recipient_id, created_at) VALUES (?, ?, ?)",
                (hash_token(code), row["id"], _now()),
            )
            return code

        return self._write(body)

    def activation_pending(self, recipient: str) -> bool:
        """Whether ``recipient`` has an activation code that was not redeemed yet."""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> bool:
            row = self._recipient_row(conn, recipient)
            return (
                conn.execute(
                    "SELECT 1 FROM activations WHERE recipient_id = ? AND redeemed_at IS NULL",
                    (row["id"],),
                ).fetchone()
                is not None
            )

        return self._read(body)

    def redeem_activation(
        self, code: str, lifetime_seconds: float | None = None
    ) -> tuple[Recipient, IssuedToken]:
        """Exchange an activation code for a new token, exactly once.

        :raises TokenError: unknown or already used code.
        """
        used = TokenError(
            "this activation link is unknown or was already used; ask the provider for a new one "
            "(DESCRIBE RECIPIENT shows it)"
        )
        if not code or not isinstance(code, str) or len(code) > 512:
            raise used
        lifetime = (
            default_token_lifetime()
            if lifetime_seconds is None
            else _check_lifetime(lifetime_seconds)
        )
        digest = hash_token(code)

        def body(conn: sqlite3.Connection) -> tuple[Recipient, IssuedToken]:
            row = conn.execute(
                "SELECT * FROM activations WHERE code_hash = ? AND redeemed_at IS NULL", (digest,)
            ).fetchone()
            if row is None or not hmac.compare_digest(row["code_hash"], digest):
                raise used
            conn.execute(
                "UPDATE activations SET redeemed_at = ? WHERE code_hash = ?", (_now(), digest)
            )
            rrow = conn.execute(
                "SELECT * FROM recipients WHERE id = ?", (row["recipient_id"],)
            ).fetchone()
            issued = self._insert_token(conn, rrow, lifetime, None)
            return Recipient.from_row(rrow), issued

        return self._write(body)

    # -- grants ----------------------------------------------------------------------------------

    def grant(self, share: str, recipient: str) -> Grant:
        """``GRANT SELECT ON SHARE share TO RECIPIENT recipient`` (idempotent).

        :raises NotFoundError: unknown share or recipient.
        """
        validate_name(share, "share")
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> Grant:
            s = self._share_row(conn, share)
            r = self._recipient_row(conn, recipient)
            conn.execute(
                "INSERT OR IGNORE INTO grants (share_id, recipient_id, granted_at) VALUES (?, ?, ?)",
                (s["id"], r["id"], _now()),
            )
            return Grant.from_row(
                conn.execute(
                    _GRANT_SELECT + " WHERE g.share_id = ? AND g.recipient_id = ?",
                    (s["id"], r["id"]),
                ).fetchone()
            )

        return self._write(body)

    def revoke(self, share: str, recipient: str) -> bool:
        """``REVOKE SELECT ON SHARE share FROM RECIPIENT recipient``; True when a grant was removed.

        :raises NotFoundError: unknown share or recipient.
        """
        validate_name(share, "share")
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> bool:
            s = self._share_row(conn, share)
            r = self._recipient_row(conn, recipient)
            cur = conn.execute(
                "DELETE FROM grants WHERE share_id = ? AND recipient_id = ?", (s["id"], r["id"])
            )
            return cur.rowcount > 0

        return self._write(body)

    def grants_on_share(self, share: str) -> list[Grant]:
        """Grants on ``share``, sorted by recipient. :raises NotFoundError:"""
        validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[Grant]:
            s = self._share_row(conn, share)
            return [
                Grant.from_row(r)
                for r in conn.execute(
                    _GRANT_SELECT + " WHERE g.share_id = ? ORDER BY r.name COLLATE NOCASE",
                    (s["id"],),
                )
            ]

        return self._read(body)

    def grants_to_recipient(self, recipient: str) -> list[Grant]:
        """Grants to ``recipient``, sorted by share. :raises NotFoundError:"""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> list[Grant]:
            r = self._recipient_row(conn, recipient)
            return [
                Grant.from_row(row)
                for row in conn.execute(
                    _GRANT_SELECT + " WHERE g.recipient_id = ? ORDER BY s.name COLLATE NOCASE",
                    (r["id"],),
                )
            ]

        return self._read(body)

    def recipient_shares(self, recipient: str) -> list[Share]:
        """The shares granted to ``recipient``, sorted by name. :raises NotFoundError:"""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> list[Share]:
            r = self._recipient_row(conn, recipient)
            return [
                Share.from_row(row)
                for row in conn.execute(
                    "SELECT s.* FROM shares s JOIN grants g ON g.share_id = s.id "
                    "WHERE g.recipient_id = ? ORDER BY s.name COLLATE NOCASE",
                    (r["id"],),
                )
            ]

        return self._read(body)

    def has_grant(self, share: str, recipient: str) -> bool:
        """Whether ``recipient`` may read ``share`` (False for unknown names, never raises NotFoundError)."""
        if not isinstance(share, str) or not isinstance(recipient, str):
            return False
        return self._read(
            lambda conn: (
                conn.execute(
                    "SELECT 1 FROM grants g JOIN shares s ON s.id = g.share_id "
                    "JOIN recipients r ON r.id = g.recipient_id WHERE s.name = ? AND r.name = ?",
                    (share, recipient),
                ).fetchone()
                is not None
            )
        )

    # -- audit -----------------------------------------------------------------------------------

    def record_audit(self, events: Iterable[AuditEvent]) -> int:
        """Append audit events in one transaction; returns how many were written."""
        rows = []
        for ev in events:
            if not isinstance(ev, AuditEvent):
                raise InvalidArgumentError(
                    f"audit events must be AuditEvent objects, got {type(ev).__name__}"
                )
            rows.append(
                (
                    _ts(ev.event_time) if ev.event_time is not None else _now(),
                    ev.recipient,
                    ev.share,
                    ev.schema,
                    ev.table,
                    ev.action,
                    ev.version,
                    ev.start_version,
                    ev.end_version,
                    ev.num_files,
                    int(bool(ev.has_predicate_hints)),
                    int(bool(ev.has_limit_hint)),
                    ev.status_code,
                    ev.user_agent,
                    ev.client_address,
                    ev.duration_ms,
                    ev.response_format,
                )
            )
        if not rows:
            return 0

        def body(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO audit (event_time, recipient, share, schema_name, table_name, action, version, "
                "start_version, end_version, num_files, has_predicate_hints, has_limit_hint, status_code, "
                "user_agent, client_address, duration_ms, response_format) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return len(rows)

        return self._write(body)

    def audit_events(self, *, limit: int | None = None) -> list[AuditEvent]:
        """Audit events, oldest first (the last ``limit`` when given)."""
        sql = "SELECT * FROM audit ORDER BY event_time, seq"
        if limit is not None:
            sql = f"SELECT * FROM (SELECT * FROM audit ORDER BY event_time DESC, seq DESC LIMIT {int(limit)}) ORDER BY event_time, seq"
        return self._read(lambda conn: [AuditEvent.from_row(r) for r in conn.execute(sql)])

    def audit_frame(self) -> pd.DataFrame:
        """The audit log as a DataFrame with :data:`AUDIT_COLUMNS`; ``event_time`` is tz-aware UTC."""
        import pandas as pd

        rows = self._read(
            lambda conn: conn.execute(
                "SELECT event_time, recipient, share, schema_name, table_name, action, version, start_version, "
                "end_version, num_files, has_predicate_hints, has_limit_hint, status_code, user_agent, "
                "client_address, duration_ms, response_format FROM audit ORDER BY event_time, seq"
            ).fetchall()
        )
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(AUDIT_COLUMNS))
        # whole microseconds: float seconds would print as ...803936958 nanoseconds
        micros = (frame["event_time"].astype("float64") * 1_000_000).round().astype("int64")
        frame["event_time"] = pd.to_datetime(micros, unit="us", utc=True)
        for col in ("version", "start_version", "end_version", "num_files", "status_code"):
            frame[col] = frame[col].astype("Int64")
        for col in ("has_predicate_hints", "has_limit_hint"):
            frame[col] = frame[col].astype("bool")
        frame["duration_ms"] = frame["duration_ms"].astype("float64")
        for col in (
            "recipient",
            "share",
            "schema",
            "table",
            "action",
            "user_agent",
            "client_address",
            "response_format",
        ):
            frame[col] = frame[col].astype("object")
        return frame


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _stable_id(share_id: str, schema: str, table: str) -> str:
    return str(uuid.uuid5(_STABLE_NS, f"{share_id}/{schema.lower()}.{table.lower()}"))


def _check_comment(comment: object) -> None:
    if comment is not None and not isinstance(comment, str):
        raise InvalidArgumentError(f"comment must be text, got {type(comment).__name__}")
    if isinstance(comment, str) and len(comment) > 65536:
        raise InvalidArgumentError(
            f"comment is {len(comment)} characters long; keep it under 65536"
        )


def _coerce_properties(properties: Mapping[str, Any] | None) -> dict[str, str]:
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise InvalidArgumentError("recipient properties must be a mapping of names to values")
    out: dict[str, str] = {}
    for key, value in properties.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME_LENGTH:
            raise InvalidArgumentError(
                f"recipient property name {key!r} must be 1 to {MAX_NAME_LENGTH} characters of text"
            )
        if any(k.lower() == key.lower() for k in out):
            raise InvalidArgumentError(
                f"recipient property {key!r} is given twice (names are case-insensitive)"
            )
        if value is None or isinstance(value, dict | list | tuple | set):
            raise InvalidArgumentError(
                f"recipient property {key!r} needs a text or number value, got {value!r}"
            )
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _coerce_partition(
    partition: Iterable[PartitionClause | tuple[Any, ...]] | None,
) -> tuple[PartitionClause, ...]:
    if partition is None:
        return ()
    clauses: list[PartitionClause] = []
    for item in partition:
        if isinstance(item, PartitionClause):
            clause = item
        elif isinstance(item, tuple | list) and len(item) in (2, 3):
            clause = PartitionClause(item[0], item[1], bool(item[2]) if len(item) == 3 else False)
        else:
            raise InvalidArgumentError(
                f"partition clause {item!r} must be PartitionClause(column, value, is_property) "
                "or a (column, value) tuple"
            )
        if not isinstance(clause.column, str) or not clause.column:
            raise InvalidArgumentError(f"partition clause {item!r} needs a column name")
        if clause.is_property:
            if not isinstance(clause.value, str) or not clause.value:
                raise InvalidArgumentError(
                    f"partition clause on {clause.column!r} needs a recipient property name for CURRENT_RECIPIENT()"
                )
        elif clause.value is not None and not isinstance(clause.value, str | int | float | bool):
            raise InvalidArgumentError(
                f"partition value for {clause.column!r} must be text, a number or a boolean, got {clause.value!r}"
            )
        if any(c.column.lower() == clause.column.lower() for c in clauses):
            raise InvalidArgumentError(
                f"partition column {clause.column!r} appears twice in the filter"
            )
        clauses.append(clause)
    return tuple(clauses)


def _validate_partition(
    clauses: tuple[PartitionClause, ...], columns: list[str], source: str
) -> None:
    lowered = {c.lower() for c in columns}
    for clause in clauses:
        if clause.column.lower() not in lowered:
            have = ", ".join(columns) if columns else "no partition columns"
            raise InvalidArgumentError(
                f"{clause.column!r} is not a partition column of {source} (it has {have}); "
                "PARTITION (...) may only filter on partition columns"
            )


def _validate_start_version(start_version: int, location: str, source: str) -> None:
    from deltalake import DeltaTable

    try:
        latest = DeltaTable(location).version()
    except Exception as exc:
        raise NotADeltaTableError(f"cannot read the Delta table at {location}: {exc}") from exc
    if start_version > latest:
        raise InvalidArgumentError(
            f"start version {start_version} is after the latest version {latest} of {source}; "
            f"use a version between 0 and {latest}"
        )
