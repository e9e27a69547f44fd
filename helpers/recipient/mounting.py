"""The **snapshot copy**: every shared table copied once into DuckDB as a read-only ``share.schema.table``.

:func:`mount` reads each table through the open protocol at one version, writes the rows into a private
DuckDB file and attaches it ``READ_ONLY``. It works offline afterwards, and it is stale: a provider's next
commit is not seen until you mount again (:func:`mounted_tables` says which version each table holds).
The **live** counterpart, closer to a Databricks catalog created ``USING SHARE`` (zero-copy, read at query
time), is :class:`helpers.recipient.RecipientSession` (``CREATE CATALOG x USING SHARE provider.share``).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers.exceptions import InvalidArgumentError, NotFoundError
from helpers.idents import quote_ident
from helpers.recipient.fast import fast_load_arrow
from helpers.recipient.profile_files import profile_path
from helpers.recipient.reading import tables

if TYPE_CHECKING:
    import duckdb
    from delta_sharing.protocol import Table

    from helpers.recipient.profile_files import ProfileLike

# the private directories holding the mounted snapshots (removed at exit); a database attached from
# one of them is a mount, any other is the user's own
_MOUNT_DIRS: list[str] = []


def _cleanup_mounts() -> None:
    for d in _MOUNT_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_mounts)


def is_mount(db_path: str | None) -> bool:
    """Whether a DuckDB database file (``duckdb_databases().path``) is one of :func:`mount`'s snapshots."""
    return bool(db_path) and any(str(db_path).startswith(d) for d in _MOUNT_DIRS)


def mount(
    profile: ProfileLike,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    use_delta_format: bool | None = None,
    shares: Iterable[str] | None = None,
    fast: bool = False,
) -> duckdb.DuckDBPyConnection:
    """Copy every table a profile grants into DuckDB as ``share.schema.table``, read-only (a snapshot).

    Each share becomes a DuckDB database (``ATTACH``) holding one schema per shared schema; the tables are
    read through the open protocol (:func:`delta_sharing.load_as_pandas`), written once into a private
    database file and attached ``READ_ONLY``, so ``INSERT``/``UPDATE``/``DELETE``/``DROP`` on a mounted
    table fail just as they do on a Databricks catalog created ``USING SHARE``. Mounting again refreshes
    the data (the previous attachment of that share is replaced). This is a **copy taken at a version**:
    it does not follow the provider's later commits (for that, use a live catalog:
    :class:`helpers.recipient.RecipientSession`).

    :param profile: a profile path or object.
    :param con: the DuckDB connection to mount into (a new in-memory one by default).
    :param use_delta_format: passed to the client (None lets the server choose).
    :param shares: only these shares (default: all).
    :param fast: read with the lean loader (:func:`helpers.recipient.fast_load_arrow`: one ``/query`` and
        concurrent downloads) instead of the official client; parquet format only.
    :return: the connection (:func:`mounted_tables` lists what was mounted, with versions).
    :raises InvalidArgumentError: when a share name collides with a DuckDB database that is not a mount.
    """
    import duckdb

    con = con if con is not None else duckdb.connect()
    path = profile_path(profile)
    by_share = _tables_by_share(profile, shares)
    existing = {
        row[0].lower(): row
        for row in con.execute("SELECT database_name, path FROM duckdb_databases()").fetchall()
    }
    for share, share_tables in sorted(by_share.items()):
        if share.lower() in existing:
            db_path = existing[share.lower()][1] or ""
            if not is_mount(db_path):
                raise InvalidArgumentError(
                    f"DuckDB already has a database named {share!r} that is not a share mount; "
                    "use another connection"
                )
            con.execute(f"DETACH {quote_ident(share)}")
            shutil.rmtree(os.path.dirname(db_path), ignore_errors=True)  # the previous snapshot
        db_file = _write_share_snapshot(path, share, share_tables, use_delta_format, fast)
        con.execute(f"ATTACH {_sql_str(db_file)} AS {quote_ident(share)} (READ_ONLY)")
    return con


def _tables_by_share(profile: ProfileLike, shares: Iterable[str] | None) -> dict[str, list[Table]]:
    """The profile's tables grouped by share, only ``shares`` when given (each must be visible)."""
    wanted = {s.lower() for s in shares} if shares is not None else None
    by_share: dict[str, list[Table]] = {}
    for t in tables(profile):
        if wanted is None or t.share.lower() in wanted:
            by_share.setdefault(t.share, []).append(t)
    if wanted is not None:
        unknown = wanted - {s.lower() for s in by_share}
        if unknown:
            raise NotFoundError(
                f"share(s) {', '.join(sorted(unknown))} not visible with this profile (or empty); "
                "list_tables(profile) shows what it can read"
            )
    return by_share


def _write_share_snapshot(
    path: str,
    share: str,
    share_tables: list[Table],
    use_delta_format: bool | None,
    fast: bool = False,
) -> str:
    """Read every table of one share into a new private DuckDB file; return the file's path."""
    import delta_sharing
    import duckdb

    work = tempfile.mkdtemp(prefix="sharelab-mount-")
    _MOUNT_DIRS.append(work)
    db_file = os.path.join(work, f"{re.sub(r'[^A-Za-z0-9_-]', '_', share)}.duckdb")
    writer = duckdb.connect(db_file)
    try:
        writer.execute(
            "CREATE TABLE IF NOT EXISTS main.__sharelab_mount "
            '(share VARCHAR, schema VARCHAR, "table" VARCHAR, rows BIGINT, version BIGINT)'
        )
        for t in sorted(share_tables, key=lambda t: (t.schema, t.name)):
            url = f"{path}#{t.share}.{t.schema}.{t.name}"
            # Time travel needs history sharing, so read the current version and make sure no
            # commit slipped in between (the recorded version must describe the rows).
            for _ in range(3):
                version = int(delta_sharing.get_table_version(url))
                frame: Any = (
                    fast_load_arrow(url)
                    if fast
                    else delta_sharing.load_as_pandas(url, use_delta_format=use_delta_format)
                )
                if int(delta_sharing.get_table_version(url)) == version:
                    break
            writer.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(t.schema)}")
            writer.register("__sharelab_frame", frame)
            writer.execute(
                f"CREATE OR REPLACE TABLE {quote_ident(t.schema)}.{quote_ident(t.name)} AS "
                "SELECT * FROM __sharelab_frame"
            )
            writer.unregister("__sharelab_frame")
            writer.execute(
                "INSERT INTO main.__sharelab_mount VALUES (?, ?, ?, ?, ?)",
                [t.share, t.schema, t.name, frame.num_rows if fast else len(frame), version],
            )
    finally:
        writer.close()
    return db_file


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def mounted_tables(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """What :func:`mount` attached to ``con``: ``share, schema, table, rows, version`` per table."""
    frames = []
    for name, db_path in con.execute(
        "SELECT database_name, path FROM duckdb_databases()"
    ).fetchall():
        if is_mount(db_path):
            frames.append(
                con.execute(f"SELECT * FROM {quote_ident(name)}.main.__sharelab_mount").df()
            )
    if not frames:
        return pd.DataFrame(columns=["share", "schema", "table", "rows", "version"])
    return pd.concat(frames, ignore_index=True).sort_values(
        ["share", "schema", "table"], ignore_index=True
    )
