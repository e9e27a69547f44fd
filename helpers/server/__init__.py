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

Modules (one job each): :mod:`.errors` (error types, the error JSON), :mod:`.audit` (audit rows and their
writer), :mod:`.params` (request parameters), :mod:`.service` (the protocol logic, by concern),
:mod:`.ndjson` (line rendering and streaming), :mod:`.app` (the Starlette routes), :mod:`.lifecycle`
(serve/start/stop/status, :func:`ensure_server`), :mod:`.cli` (the subcommands), :mod:`.limits`
(defaults and limits); :mod:`.protocol`, :mod:`.predicates` and :mod:`.signing` as before.
"""

from __future__ import annotations

from helpers.server.app import create_app
from helpers.server.audit import AuditInfo, AuditWriter
from helpers.server.cli import register_cli
from helpers.server.errors import ApiError, bad_request, error_response, not_found
from helpers.server.lifecycle import ensure_server, serve, server_port, start, status, stop
from helpers.server.limits import (
    DEFAULT_PORT,
    DEFAULT_PREFIX,
    DEFAULT_URL_TTL_SECONDS,
    MAX_FILES_PER_PAGE,
    MAX_LIST_RESULTS,
    PAGE_TOKEN_TTL_SECONDS,
    REFRESH_TOKEN_TTL_SECONDS,
)
from helpers.server.ndjson import NDJSON
from helpers.server.params import choose_format, parse_capabilities, partition_predicate
from helpers.server.service import SharingService

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_URL_TTL_SECONDS",
    "MAX_FILES_PER_PAGE",
    "MAX_LIST_RESULTS",
    "NDJSON",
    "PAGE_TOKEN_TTL_SECONDS",
    "REFRESH_TOKEN_TTL_SECONDS",
    "ApiError",
    "AuditInfo",
    "AuditWriter",
    "SharingService",
    "bad_request",
    "choose_format",
    "create_app",
    "ensure_server",
    "error_response",
    "not_found",
    "parse_capabilities",
    "partition_predicate",
    "register_cli",
    "serve",
    "server_port",
    "start",
    "status",
    "stop",
]
