"""The recipient side of the lab: everything a data consumer does with a profile file and the open protocol.

This module deliberately imports nothing from the provider side (catalog, SQL, server, datasets): a recipient
has a profile file (``*.share``) and an HTTP endpoint, nothing else, so everything here works the same against
the lab's server, the reference server or a Databricks share.

- :func:`activate` redeems a one-time activation link and writes the version-1 profile with mode 0600;
- :func:`load_profile`, :func:`tables`, :func:`list_tables` inspect what a profile grants;
- :func:`load` / :func:`changes` read a table snapshot or its change data feed into pandas;
- :func:`mount` mounts every shared table into DuckDB as a read-only ``share.schema.table`` (the D2D analogue
  of ``CREATE CATALOG ... USING SHARE``);
- :func:`snapshot_copy`, :func:`apply_scd1`, :func:`apply_scd2` maintain a local Delta copy from the change
  data feed (slowly changing dimensions of type 1 and type 2). Each apply remembers the last source version
  it applied (a Delta ``txn`` action), so re-running a cell never applies the same change twice.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import requests

from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    SharelabError,
    TokenError,
)

if TYPE_CHECKING:
    import duckdb
    from delta_sharing.protocol import DeltaSharingProfile, Table

#: Columns the change data feed adds to every row.
CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
#: Columns an SCD type-2 copy adds to the source columns.
SCD2_COLUMNS = ("valid_from", "valid_to", "is_current", "start_version", "end_version")
#: Delta ``txn`` application id under which the last applied source version is recorded.
_TXN_PREFIX = "sharelab-cdf"
# Order of change types inside one commit: a key deleted and re-inserted in one commit ends inserted.
_CHANGE_RANK = {"update_preimage": 0, "delete": 1, "insert": 2, "update_postimage": 3}


# --------------------------------------------------------------------------------------------- profiles


def load_profile(path: str | os.PathLike[str]) -> DeltaSharingProfile:
    """Read and validate a Delta Sharing profile file.

    :param path: the ``*.share`` file (JSON with ``shareCredentialsVersion``, ``endpoint``, ``bearerToken``).
    :return: the client's :class:`delta_sharing.protocol.DeltaSharingProfile`.
    :raises NotFoundError: when the file does not exist.
    :raises InvalidArgumentError: when it is not a valid profile.
    """
    from delta_sharing.protocol import DeltaSharingProfile

    p = Path(path).expanduser()
    if not p.is_file():
        raise NotFoundError(
            f"profile file {p} does not exist; redeem the activation link the provider gave you "
            "(helpers.recipient.activate(link, path)) or pass the path of an existing *.share file"
        )
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"profile file {p} is not JSON ({exc}); ask the provider for a new one"
        ) from exc
    _check_profile_json(raw, str(p))
    try:
        return DeltaSharingProfile.read_from_file(str(p))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(
            f"profile file {p} is not a valid Delta Sharing profile: {exc}"
        ) from exc


def _check_profile_json(raw: Any, where: str) -> None:
    if not isinstance(raw, dict):
        raise InvalidArgumentError(
            f"{where} is not a Delta Sharing profile (expected a JSON object)"
        )
    missing = [k for k in ("shareCredentialsVersion", "endpoint") if k not in raw]
    if missing:
        raise InvalidArgumentError(
            f"{where} is not a Delta Sharing profile: missing {', '.join(missing)}"
        )
    if raw.get("shareCredentialsVersion") == 1 and not raw.get("bearerToken"):
        raise InvalidArgumentError(f"{where} is a version-1 profile without a bearerToken")


def _as_profile(profile: Any) -> DeltaSharingProfile:
    from delta_sharing.protocol import DeltaSharingProfile

    if isinstance(profile, DeltaSharingProfile):
        return profile
    return load_profile(profile)


def _profile_path(profile: Any) -> str:
    """The profile as the client's URL prefix needs it (a file path); profiles in memory are spilled."""
    from delta_sharing.protocol import DeltaSharingProfile

    if isinstance(profile, DeltaSharingProfile):
        fd, tmp = tempfile.mkstemp(prefix="sharelab-profile-", suffix=".share")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "shareCredentialsVersion": profile.share_credentials_version,
                    "endpoint": profile.endpoint,
                    "bearerToken": profile.bearer_token,
                },
                fh,
            )
        atexit.register(_unlink_quietly, tmp)
        return tmp
    p = Path(profile).expanduser()
    load_profile(p)  # validate early, with our error messages
    return str(p.resolve())


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_profile(
    profile: dict[str, Any], out_path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a profile dict as a ``*.share`` file readable by its owner only (mode 0600).

    The file is written to a temporary name (created 0600) and renamed, so a crash never leaves a
    half-written or world-readable profile behind.

    :raises AlreadyExistsError: when ``out_path`` exists and ``overwrite`` is false.
    """
    _check_profile_json(profile, "the profile")
    out = Path(out_path).expanduser()
    if out.exists() and not overwrite:
        raise AlreadyExistsError(
            f"{out} exists already; pass overwrite=True or choose another path"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(profile, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, out)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    os.chmod(out, 0o600)
    return out


def activate(
    activation_url: str,
    out_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    timeout: float = 30.0,
) -> Path:
    """Redeem a one-time activation link and save the profile it returns (mode 0600).

    The target is checked *before* the link is fetched: an activation can be redeemed only once, so
    we never consume it when the profile could not be saved.

    :param activation_url: the link the provider shared (``.../delta-sharing/activation/<code>``).
    :param out_path: where to write the profile file.
    :param overwrite: replace an existing file at ``out_path``.
    :return: the path written.
    :raises AlreadyExistsError: ``out_path`` exists and ``overwrite`` is false (the link is left unused).
    :raises TokenError: the link is unknown, expired or was used already.
    """
    out = Path(out_path).expanduser()
    if out.exists() and not overwrite:
        raise AlreadyExistsError(
            f"{out} exists already; the activation link was NOT used. Pass overwrite=True or another path"
        )
    if not re.match(r"^https?://", activation_url or ""):
        raise InvalidArgumentError(
            f"activation link {activation_url!r} is not an http(s) URL; copy the whole link from "
            "DESCRIBE RECIPIENT"
        )
    try:
        resp = requests.get(activation_url, timeout=timeout)
    except requests.RequestException as exc:
        raise SharelabError(
            f"could not reach {activation_url} ({exc.__class__.__name__}); is the provider's server running?"
        ) from exc
    if resp.status_code != 200:
        message = _error_message(resp)
        if resp.status_code in (401, 403, 404, 410):
            raise TokenError(
                f"activation failed ({resp.status_code}: {message}); activation links work once: ask the "
                "provider for a new one"
            )
        raise SharelabError(f"activation failed ({resp.status_code}: {message})")
    try:
        profile = resp.json()
    except ValueError as exc:
        raise SharelabError(f"activation at {activation_url} did not return JSON") from exc
    return write_profile(profile, out, overwrite=overwrite)


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body.get("errorCode") or body)
    except ValueError:
        return resp.text[:200] or resp.reason


# --------------------------------------------------------------------------------------------- listing


def client(profile: Any) -> Any:
    """A :class:`delta_sharing.SharingClient` for a profile path or object."""
    import delta_sharing

    return delta_sharing.SharingClient(_as_profile(profile))


def tables(profile: Any) -> list[Table]:
    """Every table the profile can read, over all its shares (``SharingClient.list_all_tables``)."""
    return list(client(profile).list_all_tables())


def list_tables(profile: Any) -> pd.DataFrame:
    """The tables a profile grants as a frame: ``share, schema, table, url`` sorted by name.

    ``url`` is the ``<profile>#<share>.<schema>.<table>`` string that :func:`delta_sharing.load_as_pandas`
    takes.
    """
    path = _profile_path(profile)
    rows = [
        {
            "share": t.share,
            "schema": t.schema,
            "table": t.name,
            "url": f"{path}#{t.share}.{t.schema}.{t.name}",
        }
        for t in tables(profile)
    ]
    frame = pd.DataFrame(rows, columns=["share", "schema", "table", "url"])
    return frame.sort_values(["share", "schema", "table"], ignore_index=True)


def table_url(profile: Any, share: str, schema: str, table: str) -> str:
    """The client's table URL ``<profile path>#<share>.<schema>.<table>``."""
    return f"{_profile_path(profile)}#{share}.{schema}.{table}"


def _split_name(name: str) -> tuple[str, str, str]:
    parts = name.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidArgumentError(f"table name {name!r} must be share.schema.table")
    return parts[0], parts[1], parts[2]


def load(
    profile: Any,
    name: str,
    *,
    version: int | None = None,
    limit: int | None = None,
    use_delta_format: bool | None = None,
) -> pd.DataFrame:
    """Load one shared table (``share.schema.table``) into pandas through the open protocol."""
    import delta_sharing

    share, schema, table = _split_name(name)
    return delta_sharing.load_as_pandas(
        table_url(profile, share, schema, table),
        version=version,
        limit=limit,
        use_delta_format=use_delta_format,
    )


def table_version(profile: Any, name: str) -> int:
    """The current version of a shared table, as the server reports it."""
    import delta_sharing

    share, schema, table = _split_name(name)
    return int(delta_sharing.get_table_version(table_url(profile, share, schema, table)))


def changes(
    profile: Any,
    name: str,
    starting_version: int,
    ending_version: int | None = None,
    *,
    use_delta_format: bool | None = None,
) -> pd.DataFrame:
    """The change data feed of a shared table from ``starting_version`` (inclusive), in commit order.

    ``_commit_timestamp`` is normalised to a UTC ``datetime64`` whatever the response format (the parquet
    path returns epoch milliseconds, the delta path a timestamp), and rows are sorted by commit version.
    """
    import delta_sharing

    share, schema, table = _split_name(name)
    frame = delta_sharing.load_table_changes_as_pandas(
        table_url(profile, share, schema, table),
        starting_version=starting_version,
        ending_version=ending_version,
        use_delta_format=use_delta_format,
    )
    return normalize_changes(frame)


def normalize_changes(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a change-data-feed frame UTC ``_commit_timestamp`` values and commit order."""
    missing = [c for c in CDF_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidArgumentError(
            f"not a change data feed frame: missing {', '.join(missing)} (use load_table_changes_as_pandas)"
        )
    frame = frame.copy()
    ts = frame["_commit_timestamp"]
    if pd.api.types.is_numeric_dtype(ts):
        frame["_commit_timestamp"] = pd.to_datetime(ts, unit="ms", utc=True)
    else:
        frame["_commit_timestamp"] = pd.to_datetime(ts, utc=True)
    frame["_commit_version"] = frame["_commit_version"].astype("int64")
    rank = frame["_change_type"].map(_CHANGE_RANK).fillna(9)
    order = frame.assign(_rank=rank).sort_values(["_commit_version", "_rank"], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


# --------------------------------------------------------------------------------------------- DuckDB mount


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


_MOUNT_DIRS: list[str] = []


def _cleanup_mounts() -> None:
    for d in _MOUNT_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_mounts)


def mount(
    profile: Any,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    use_delta_format: bool | None = None,
    shares: Iterable[str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Mount every table a profile grants into DuckDB as ``share.schema.table``, read-only.

    Each share becomes a DuckDB database (``ATTACH``) holding one schema per shared schema; the tables are
    read through the open protocol (:func:`delta_sharing.load_as_pandas`), written once into a private
    database file and attached ``READ_ONLY``, so ``INSERT``/``UPDATE``/``DELETE``/``DROP`` on a mounted
    table fail just as they do on a Databricks catalog created ``USING SHARE``. Mounting again refreshes
    the data (the previous attachment of that share is replaced).

    :param profile: a profile path or object.
    :param con: the DuckDB connection to mount into (a new in-memory one by default).
    :param use_delta_format: passed to the client (None lets the server choose).
    :param shares: only these shares (default: all).
    :return: the connection (:func:`mounted_tables` lists what was mounted, with versions).
    :raises InvalidArgumentError: when a share name collides with a DuckDB database that is not a mount.
    """
    import delta_sharing
    import duckdb

    con = con if con is not None else duckdb.connect()
    path = _profile_path(profile)
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
    existing = {
        row[0].lower(): row
        for row in con.execute("SELECT database_name, path FROM duckdb_databases()").fetchall()
    }
    for share, share_tables in sorted(by_share.items()):
        if share.lower() in existing:
            db_path = existing[share.lower()][1] or ""
            if not any(db_path.startswith(d) for d in _MOUNT_DIRS):
                raise InvalidArgumentError(
                    f"DuckDB already has a database named {share!r} that is not a share mount; "
                    "use another connection"
                )
            con.execute(f"DETACH {_quote(share)}")
            shutil.rmtree(os.path.dirname(db_path), ignore_errors=True)  # the previous snapshot
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
                    frame = delta_sharing.load_as_pandas(url, use_delta_format=use_delta_format)
                    if int(delta_sharing.get_table_version(url)) == version:
                        break
                writer.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(t.schema)}")
                writer.register("__sharelab_frame", frame)
                writer.execute(
                    f"CREATE OR REPLACE TABLE {_quote(t.schema)}.{_quote(t.name)} AS "
                    "SELECT * FROM __sharelab_frame"
                )
                writer.unregister("__sharelab_frame")
                writer.execute(
                    "INSERT INTO main.__sharelab_mount VALUES (?, ?, ?, ?, ?)",
                    [t.share, t.schema, t.name, len(frame), version],
                )
        finally:
            writer.close()
        con.execute(f"ATTACH {_sql_str(db_file)} AS {_quote(share)} (READ_ONLY)")
    return con


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def mounted_tables(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """What :func:`mount` attached to ``con``: ``share, schema, table, rows, version`` per table."""
    frames = []
    for name, db_path in con.execute(
        "SELECT database_name, path FROM duckdb_databases()"
    ).fetchall():
        if db_path and any(db_path.startswith(d) for d in _MOUNT_DIRS):
            frames.append(con.execute(f"SELECT * FROM {_quote(name)}.main.__sharelab_mount").df())
    if not frames:
        return pd.DataFrame(columns=["share", "schema", "table", "rows", "version"])
    return pd.concat(frames, ignore_index=True).sort_values(
        ["share", "schema", "table"], ignore_index=True
    )


# --------------------------------------------------------------------------------------------- local copies


def _txn_app_id(key: Sequence[str]) -> str:
    return f"{_TXN_PREFIX}:{','.join(key)}"


def applied_version(
    local_delta_path: str | os.PathLike[str], key: str | Sequence[str]
) -> int | None:
    """The last source version applied to a local copy (None when none was recorded)."""
    from deltalake import DeltaTable

    keys = _keys(key)
    if not DeltaTable.is_deltatable(str(local_delta_path)):
        return None
    version = DeltaTable(str(local_delta_path)).transaction_version(_txn_app_id(keys))
    return None if version is None else int(version)


def _keys(key: str | Sequence[str]) -> list[str]:
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise InvalidArgumentError("key must name at least one column")
    return keys


def _commit(keys: Sequence[str], version: int, source_id: str | None = None) -> Any:
    from deltalake import CommitProperties, Transaction

    metadata = {"sharelab.source_version": str(int(version))}
    if source_id:
        metadata["sharelab.source_table_id"] = str(source_id)
    return CommitProperties(
        app_transactions=[Transaction(app_id=_txn_app_id(keys), version=int(version))],
        custom_metadata=metadata,
    )


def copy_source_id(local_delta_path: str | os.PathLike[str]) -> str | None:
    """The source table id a copy was started from (``snapshot_copy(..., source_id=...)``), or None.

    A provider that drops and recreates a table gives it a new id (and restarts its versions), so a
    recipient compares this with ``delta_sharing.get_table_metadata(url).id`` before applying changes.
    """
    from deltalake import DeltaTable

    local = str(Path(local_delta_path).expanduser())
    if not DeltaTable.is_deltatable(local):
        return None
    for entry in DeltaTable(local).history():  # newest first
        if entry.get("sharelab.source_table_id"):
            return str(entry["sharelab.source_table_id"])
    return None


def _to_arrow(frame: pd.DataFrame, schema: Any = None) -> Any:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    return table


def _target_schema(local: str) -> Any:
    import pyarrow as pa
    from deltalake import DeltaTable

    return pa.schema(DeltaTable(local).schema().to_arrow())


def snapshot_copy(
    local_delta_path: str | os.PathLike[str],
    snapshot: pd.DataFrame,
    key: str | Sequence[str],
    version: int,
    *,
    scd2: bool = False,
    valid_from: Any = None,
    overwrite: bool = False,
    source_id: str | None = None,
) -> Path:
    """Start a local Delta copy from a snapshot read at source ``version``.

    :param snapshot: the rows (``load_as_pandas(url, version=version)``).
    :param version: the source version the snapshot was read at; later changes apply from ``version + 1``.
    :param scd2: add the type-2 columns (``valid_from``, ``valid_to``, ``is_current``, ``start_version``,
        ``end_version``); ``valid_from`` should be the commit timestamp of ``version`` (never now()).
    :param overwrite: replace an existing copy; otherwise an existing copy is left as it is.
    :param source_id: the source table's id (``get_table_metadata(url).id``), recorded so that
        :func:`copy_source_id` can tell when the provider recreated the table.
    :raises AlreadyExistsError: the copy exists and ``overwrite`` is false.
    """
    from deltalake import DeltaTable, write_deltalake

    keys = _keys(key)
    local = str(Path(local_delta_path).expanduser())
    if DeltaTable.is_deltatable(local) and not overwrite:
        raise AlreadyExistsError(
            f"a Delta table exists at {local}; pass overwrite=True to start again"
        )
    missing = [k for k in keys if k not in snapshot.columns]
    if missing:
        raise InvalidArgumentError(f"key column(s) {', '.join(missing)} not in the snapshot")
    frame = snapshot.drop(columns=[c for c in CDF_COLUMNS if c in snapshot.columns])
    if scd2:
        if valid_from is None:
            raise InvalidArgumentError(
                "scd2 copies need valid_from: the commit timestamp of the snapshot version"
            )
        frame = frame.assign(
            valid_from=pd.Timestamp(valid_from, tz="UTC")
            if pd.Timestamp(valid_from).tzinfo is None
            else pd.Timestamp(valid_from).tz_convert("UTC"),
            valid_to=pd.Series(
                [pd.NaT] * len(frame), dtype="datetime64[us, UTC]", index=frame.index
            ),
            is_current=True,
            start_version=int(version),
            end_version=pd.Series([None] * len(frame), dtype="Int64", index=frame.index),
        )
        frame["valid_from"] = frame["valid_from"].astype("datetime64[us, UTC]")
    write_deltalake(
        local,
        _to_arrow(frame),
        mode="overwrite",
        commit_properties=_commit(keys, version, source_id),
        schema_mode="overwrite" if overwrite else None,
    )
    return Path(local)


def _pending(local: str, changes_df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The change rows newer than what the copy has applied, preimages dropped, in commit order."""
    changes_df = normalize_changes(changes_df)
    missing = [k for k in keys if k not in changes_df.columns]
    if missing:
        raise InvalidArgumentError(f"key column(s) {', '.join(missing)} not in the changes")
    done = applied_version(local, keys)
    if done is not None:
        changes_df = changes_df[changes_df["_commit_version"] > done]
    return changes_df[changes_df["_change_type"] != "update_preimage"].reset_index(drop=True)


def _predicate(keys: list[str], extra: str = "") -> str:
    cond = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in keys)
    return f"{cond} AND {extra}" if extra else cond


def apply_scd1(
    local_delta_path: str | os.PathLike[str], changes_df: pd.DataFrame, key: str | Sequence[str]
) -> dict[str, int]:
    """Apply a change data feed to a local Delta copy as a slowly changing dimension of type 1.

    Type 1 keeps only the current value of each key: the last change of a key wins; deletes delete,
    inserts and update post-images upsert. One ``MERGE`` commit; changes at or below the version the
    copy already applied are skipped, so applying the same feed twice changes nothing.

    :param local_delta_path: the copy (created from the changes when it does not exist yet; better, start
        it with :func:`snapshot_copy`).
    :param changes_df: rows from :func:`changes` / ``load_table_changes_as_pandas``.
    :param key: the business key column(s).
    :return: counts ``{"upserted": n, "deleted": n, "skipped_versions": n, "applied_version": v}``.
    """
    from deltalake import DeltaTable, write_deltalake

    keys = _keys(key)
    local = str(Path(local_delta_path).expanduser())
    pending = _pending(local, changes_df, keys)
    if pending.empty:
        return {"upserted": 0, "deleted": 0, "applied_version": applied_version(local, keys) or -1}
    last = pending.groupby(keys, sort=False, dropna=False).tail(1)
    last_version = int(pending["_commit_version"].max())
    upserts = last[last["_change_type"] != "delete"]
    deletes = last[last["_change_type"] == "delete"]
    source = last.drop(columns=["_commit_version", "_commit_timestamp"])
    if not DeltaTable.is_deltatable(local):
        write_deltalake(
            local,
            _to_arrow(upserts.drop(columns=list(CDF_COLUMNS))),
            commit_properties=_commit(keys, last_version),
        )
    else:
        schema = _target_schema(local)
        import pyarrow as pa

        src_schema = pa.schema([*schema, pa.field("_change_type", pa.string())])
        (
            DeltaTable(local)
            .merge(
                _to_arrow(source, src_schema),
                predicate=_predicate(keys),
                source_alias="s",
                target_alias="t",
                commit_properties=_commit(keys, last_version),
            )
            .when_matched_delete(predicate="s._change_type = 'delete'")
            .when_matched_update(
                updates={_quote(c): f"s.{_quote(c)}" for c in schema.names},
                predicate="s._change_type <> 'delete'",
            )
            .when_not_matched_insert(
                updates={_quote(c): f"s.{_quote(c)}" for c in schema.names},
                predicate="s._change_type <> 'delete'",
            )
            .execute()
        )
    return {"upserted": len(upserts), "deleted": len(deletes), "applied_version": last_version}


def apply_scd2(
    local_delta_path: str | os.PathLike[str], changes_df: pd.DataFrame, key: str | Sequence[str]
) -> dict[str, int]:
    """Apply a change data feed to a local Delta copy as a slowly changing dimension of type 2.

    Type 2 keeps every version of a key: the current row of a changed key is closed (``is_current`` false,
    ``valid_to`` = the change's commit timestamp, ``end_version`` = its commit version) and inserts and update
    post-images add a new current row valid from their commit timestamp. Deletes close the row and add none.
    Timestamps come from the feed, never from the clock, so a re-run gives the same table. Changes at or
    below the version already applied are skipped.

    :param local_delta_path: a copy started with :func:`snapshot_copy(..., scd2=True) <snapshot_copy>`.
    :return: counts ``{"closed": n, "inserted": n, "applied_version": v}``.
    :raises NotFoundError: when the copy does not exist.
    """
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    keys = _keys(key)
    local = str(Path(local_delta_path).expanduser())
    if not DeltaTable.is_deltatable(local):
        raise NotFoundError(
            f"no Delta table at {local}; start it with snapshot_copy(..., scd2=True)"
        )
    schema = _target_schema(local)
    absent = [c for c in SCD2_COLUMNS if c not in schema.names]
    if absent:
        raise InvalidArgumentError(f"{local} is not a type-2 copy (missing {', '.join(absent)})")
    pending = _pending(local, changes_df, keys)
    if pending.empty:
        return {"closed": 0, "inserted": 0, "applied_version": applied_version(local, keys) or -1}
    last_version = int(pending["_commit_version"].max())
    # Each event is closed by the key's next event; the first event of a key closes the current row.
    events = pending.copy()
    grouped = events.groupby(keys, sort=False, dropna=False)
    events["valid_to"] = grouped["_commit_timestamp"].shift(-1)
    events["end_version"] = grouped["_commit_version"].shift(-1).astype("Int64")
    first = grouped.head(1)
    new_rows = events[events["_change_type"].isin(["insert", "update_postimage"])].copy()
    new_rows["valid_from"] = new_rows["_commit_timestamp"]
    new_rows["start_version"] = new_rows["_commit_version"]
    new_rows["is_current"] = new_rows["end_version"].isna()
    new_rows = new_rows.drop(columns=list(CDF_COLUMNS))
    closers = first[keys + ["_commit_timestamp", "_commit_version"]].rename(
        columns={"_commit_timestamp": "close_at", "_commit_version": "close_version"}
    )
    closers_schema = pa.schema(
        [
            *(schema.field(k) for k in keys),
            pa.field("close_at", schema.field("valid_from").type),
            pa.field("close_version", schema.field("start_version").type),
        ]
    )
    dt = DeltaTable(local)
    merged = (
        dt.merge(
            _to_arrow(closers, closers_schema),
            predicate=_predicate(keys, "t.is_current"),
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update(
            updates={
                "is_current": "false",
                "valid_to": "s.close_at",
                "end_version": "s.close_version",
            }
        )
        .execute()
    )
    write_deltalake(
        local,
        _to_arrow(new_rows, schema),
        mode="append",
        commit_properties=_commit(keys, last_version),
    )
    return {
        "closed": int(merged.get("num_target_rows_updated", 0)),
        "inserted": len(new_rows),
        "applied_version": last_version,
    }


def read_copy(local_delta_path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a local Delta copy into pandas."""
    from deltalake import DeltaTable

    local = str(Path(local_delta_path).expanduser())
    if not DeltaTable.is_deltatable(local):
        raise NotFoundError(f"no Delta table at {local}")
    return DeltaTable(local).to_pandas()


def same_rows(left: pd.DataFrame, right: pd.DataFrame, key: str | Sequence[str]) -> bool:
    """Whether two frames hold the same rows (column order and row order ignored; dtypes normalised)."""
    keys = _keys(key)
    if sorted(left.columns) != sorted(right.columns) or len(left) != len(right):
        return False
    cols = sorted(left.columns)

    def norm(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[cols].sort_values(keys, ignore_index=True)
        for c in cols:
            s = out[c]
            if isinstance(s.dtype, pd.DatetimeTZDtype):
                out[c] = s.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
            elif pd.api.types.is_datetime64_any_dtype(s):
                out[c] = s.astype("datetime64[us]")
            else:
                out[c] = s.astype(object).where(s.notna(), None)
        return out

    return norm(left).equals(norm(right))


# --------------------------------------------------------------------------------------------- checkpoints


def remember_versions(
    checkpoint_path: str | os.PathLike[str], versions: dict[str, int], *, overwrite: bool = False
) -> dict[str, int]:
    """Record the table versions a recipient has seen, in a small JSON file (a consumer checkpoint).

    A recipient that follows a change data feed needs to remember where it stopped, like a streaming
    query's checkpoint. By default only tables without an entry are recorded (the version at which the
    recipient first saw the table), so re-running a notebook does not move the checkpoint.

    :param versions: ``share.schema.table`` → version.
    :param overwrite: replace existing entries too.
    :return: the whole checkpoint after the update.
    """
    path = Path(checkpoint_path).expanduser()
    current = _read_checkpoint(path)
    for name, version in versions.items():
        if overwrite or name not in current:
            current[name] = int(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return current


def remembered_version(checkpoint_path: str | os.PathLike[str], name: str) -> int | None:
    """The version recorded for ``share.schema.table`` by :func:`remember_versions` (None if none)."""
    return _read_checkpoint(Path(checkpoint_path).expanduser()).get(name)


def _read_checkpoint(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidArgumentError(
            f"checkpoint {path} is not JSON ({exc}); delete it to start again"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidArgumentError(
            f"checkpoint {path} is not a JSON object; delete it to start again"
        )
    return {str(k): int(v) for k, v in data.items()}


def check_profile(profile: Any, *, timeout: float = 5.0) -> str:
    """A quick, non-retrying health check of a profile: ``"ok"``, ``"unauthorized"`` or ``"unreachable"``.

    The official client retries connection errors with exponential backoff for about 100 s; a notebook
    that only wants to know whether a profile still works should not wait that long.
    """
    p = _as_profile(profile)
    try:
        resp = requests.get(
            f"{p.endpoint.rstrip('/')}/shares",
            timeout=timeout,
            headers={"Authorization": f"Bearer {p.bearer_token}"},
        )
    except requests.RequestException:
        return "unreachable"
    if resp.status_code == 200:
        return "ok"
    return "unauthorized" if resp.status_code in (401, 403) else f"error {resp.status_code}"
