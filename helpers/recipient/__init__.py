"""The recipient side of the lab: everything a data consumer does with a profile file and the open protocol.

This package deliberately imports nothing from the provider side (catalog, SQL, server, datasets): a recipient
has a profile file (``*.share``) and an HTTP endpoint, nothing else, so everything here works the same against
the lab's server, the reference server or a Databricks share.

- :func:`activate` redeems a one-time activation link and writes the version-1 profile with mode 0600;
- :func:`load_profile`, :func:`tables`, :func:`list_tables` inspect what a profile grants;
- :func:`load` / :func:`changes` read a table snapshot or its change data feed into pandas;
- :func:`fast_load` reads a snapshot with one ``/query`` and concurrent downloads (the lean loader for
  dashboards and mounts; :mod:`~helpers.recipient.fast`, its HTTP on kept connections in
  :mod:`~helpers.recipient.keepalive`);
- :class:`RecipientSession` is the recipient's SQL (``SHOW PROVIDERS``, ``DESCRIBE PROVIDER``, ``SHOW SHARES
  IN PROVIDER``, ``CREATE CATALOG x USING SHARE provider.share``...): a **live** shared catalog, zero-copy,
  read through the protocol at query time (:mod:`~helpers.recipient.shared_catalog`);
- :func:`mount` is the **snapshot copy**: every shared table copied once into DuckDB as a read-only
  ``share.schema.table`` (offline, stale until mounted again);
- :func:`snapshot_copy`, :func:`apply_scd1`, :func:`apply_scd2` maintain a local Delta copy from the change
  data feed (slowly changing dimensions of type 1 and type 2). Each apply remembers the last source version
  it applied (a Delta ``txn`` action), so re-running a cell never applies the same change twice.

Modules: :mod:`~helpers.recipient.profile_files` (profile files, activation, health check),
:mod:`~helpers.recipient.reading` (listing, snapshots, change data feed), :mod:`~helpers.recipient.mounting`
(DuckDB snapshot copy), :mod:`~helpers.recipient.shared_catalog` (live shared catalogs and the recipient's SQL,
parsed by :mod:`~helpers.recipient.shared_sql`; providers and their REST calls in
:mod:`~helpers.recipient.providers`), :mod:`~helpers.recipient.copies` (SCD 1/2 local copies), :mod:`~helpers.recipient.checkpoints`
(consumer checkpoints), :mod:`~helpers.recipient.trust` (trusting a workshop's lab CA over TLS). Every public name is re-exported here: ``from helpers import recipient`` is the API.
"""

from __future__ import annotations

from helpers.recipient.checkpoints import remember_versions, remembered_version
from helpers.recipient.copies import (
    SCD2_COLUMNS,
    applied_version,
    apply_scd1,
    apply_scd2,
    copy_source_id,
    read_copy,
    same_rows,
    snapshot_copy,
)
from helpers.recipient.fast import fast_load, fast_load_arrow
from helpers.recipient.mounting import is_mount, mount, mounted_tables
from helpers.recipient.profile_files import (
    activate,
    activate_with_ca,
    check_profile,
    load_profile,
    write_profile,
)
from helpers.recipient.providers import Provider, ProviderClient, load_providers
from helpers.recipient.reading import (
    CDF_COLUMNS,
    changes,
    client,
    list_tables,
    load,
    normalize_changes,
    table_url,
    table_version,
    tables,
)
from helpers.recipient.shared_catalog import RecipientSession, SharedCatalog
from helpers.recipient.trust import (
    TlsError,
    ca_fingerprint,
    check_tls,
    fetch_lab_ca,
    trust_ca,
    trust_profile,
)

__all__ = [
    "Provider",
    "ProviderClient",
    "RecipientSession",
    "SharedCatalog",
    "is_mount",
    "load_providers",
    "TlsError",
    "activate_with_ca",
    "ca_fingerprint",
    "check_tls",
    "fetch_lab_ca",
    "trust_ca",
    "trust_profile",
    "CDF_COLUMNS",
    "SCD2_COLUMNS",
    "activate",
    "applied_version",
    "apply_scd1",
    "apply_scd2",
    "changes",
    "check_profile",
    "client",
    "copy_source_id",
    "fast_load",
    "fast_load_arrow",
    "list_tables",
    "load",
    "load_profile",
    "mount",
    "mounted_tables",
    "normalize_changes",
    "read_copy",
    "remember_versions",
    "remembered_version",
    "same_rows",
    "snapshot_copy",
    "table_url",
    "table_version",
    "tables",
    "write_profile",
]
