"""The provider catalog: one SQLite file holding tables, shares, recipients, tokens, grants and audit events.

The catalog lives at ``<lab home>/catalog.db``; the lab home is ``sharelab --home DIR``, else
``$SHARELAB_HOME``, else ``~/.sharelab`` (see :mod:`helpers.home`).

Concurrency: the sharing server's threads and notebooks use the catalog at the same time. The file is in WAL
mode with a ``busy_timeout``; connections are pooled and borrowed per transaction (:mod:`.db`); every write is
one short ``BEGIN IMMEDIATE`` transaction that is retried with backoff (up to :data:`WRITE_RETRY_SECONDS`)
when SQLite reports the database busy or locked, so "database is locked" never reaches the caller. A failed
call rolls back and leaves the catalog unchanged. Values are always bound parameters. Several calls become
one transaction with ``with catalog.db.transaction(): ...``.

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

Modules: :mod:`.db` (the SQLite layer, shared with the mesh), :mod:`.clock`, :mod:`.names`, :mod:`.models`,
:mod:`.tokens`, :mod:`.schema` (DDL and migrations), :mod:`.rows` and :mod:`.checks` (used by the calls),
:mod:`.catalog` (the :class:`Catalog` class) with its mixins :mod:`.shares`, :mod:`.recipients` and
:mod:`.audit`, :mod:`.governance` (grant conditions, pinned table versions) and :mod:`.lineage` (derived
tables). Profiles (token + endpoint files) are :mod:`helpers.profiles`.
"""

from __future__ import annotations

from helpers.catalog import clock
from helpers.catalog.catalog import Catalog, open_catalog
from helpers.catalog.db import BUSY_TIMEOUT_MS, WRITE_RETRY_SECONDS, Database
from helpers.catalog.governance import GrantCondition, GrantViolation, TablePin
from helpers.catalog.lineage import Derivation
from helpers.catalog.models import (
    AUDIT_COLUMNS,
    AuditEvent,
    Grant,
    IssuedToken,
    PartitionClause,
    Recipient,
    Share,
    SharedTable,
    ShareEntry,
    TableInfo,
    TokenInfo,
)
from helpers.catalog.names import (
    MAX_NAME_LENGTH,
    name_key,
    parse_delta_path,
    validate_endpoint,
    validate_name,
)
from helpers.catalog.schema import SCHEMA_VERSION
from helpers.catalog.tokens import (
    DEFAULT_TOKEN_LIFETIME_SECONDS,
    MAX_LIVE_TOKENS,
    MAX_TOKEN_LIFETIME_SECONDS,
    TOKEN_LIFETIME_ENV,
    TOKEN_PREFIX,
    TOKEN_PREFIX_CHARS,
    default_token_lifetime,
    hash_token,
)

__all__ = [
    "AUDIT_COLUMNS",
    "BUSY_TIMEOUT_MS",
    "DEFAULT_TOKEN_LIFETIME_SECONDS",
    "MAX_LIVE_TOKENS",
    "MAX_NAME_LENGTH",
    "MAX_TOKEN_LIFETIME_SECONDS",
    "SCHEMA_VERSION",
    "TOKEN_LIFETIME_ENV",
    "TOKEN_PREFIX",
    "TOKEN_PREFIX_CHARS",
    "WRITE_RETRY_SECONDS",
    "AuditEvent",
    "Catalog",
    "Database",
    "Derivation",
    "Grant",
    "GrantCondition",
    "GrantViolation",
    "IssuedToken",
    "PartitionClause",
    "Recipient",
    "Share",
    "ShareEntry",
    "SharedTable",
    "TableInfo",
    "TablePin",
    "TokenInfo",
    "clock",
    "default_token_lifetime",
    "hash_token",
    "name_key",
    "open_catalog",
    "parse_delta_path",
    "validate_endpoint",
    "validate_name",
]
