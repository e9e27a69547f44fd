"""Local Delta copies maintained from the change data feed (slowly changing dimensions of type 1 and 2).

Each apply remembers the last source version it applied (a Delta ``txn`` action), so re-running a cell
never applies the same change twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from helpers.exceptions import AlreadyExistsError, InvalidArgumentError, NotFoundError
from helpers.idents import quote_ident
from helpers.recipient.reading import CDF_COLUMNS, normalize_changes

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import CommitProperties

#: Columns an SCD type-2 copy adds to the source columns.
SCD2_COLUMNS = ("valid_from", "valid_to", "is_current", "start_version", "end_version")
#: Delta ``txn`` application id under which the last applied source version is recorded.
_TXN_PREFIX = "sharelab-cdf"


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


def _commit(keys: Sequence[str], version: int, source_id: str | None = None) -> CommitProperties:
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


def _to_arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    return table


def _target_schema(local: str) -> pa.Schema:
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
    valid_from: str | datetime | pd.Timestamp | None = None,
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
        frame = _with_scd2_columns(frame, valid_from, version)
    write_deltalake(
        local,
        _to_arrow(frame),
        mode="overwrite",
        commit_properties=_commit(keys, version, source_id),
        schema_mode="overwrite" if overwrite else None,
    )
    return Path(local)


def _with_scd2_columns(
    frame: pd.DataFrame, valid_from: str | datetime | pd.Timestamp, version: int
) -> pd.DataFrame:
    """``frame`` with the type-2 columns of rows current since ``valid_from`` (source ``version``)."""
    frame = frame.assign(
        valid_from=pd.Timestamp(valid_from, tz="UTC")
        if pd.Timestamp(valid_from).tzinfo is None
        else pd.Timestamp(valid_from).tz_convert("UTC"),
        valid_to=pd.Series([pd.NaT] * len(frame), dtype="datetime64[us, UTC]", index=frame.index),
        is_current=True,
        start_version=int(version),
        end_version=pd.Series([None] * len(frame), dtype="Int64", index=frame.index),
    )
    frame["valid_from"] = frame["valid_from"].astype("datetime64[us, UTC]")
    return frame


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
    cond = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in keys)
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
        _merge_scd1(local, source, keys, last_version)
    return {"upserted": len(upserts), "deleted": len(deletes), "applied_version": last_version}


def _merge_scd1(local: str, source: pd.DataFrame, keys: list[str], last_version: int) -> None:
    """One ``MERGE``: the last change of each key deletes or upserts its row."""
    import pyarrow as pa
    from deltalake import DeltaTable

    schema = _target_schema(local)
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
            updates={quote_ident(c): f"s.{quote_ident(c)}" for c in schema.names},
            predicate="s._change_type <> 'delete'",
        )
        .when_not_matched_insert(
            updates={quote_ident(c): f"s.{quote_ident(c)}" for c in schema.names},
            predicate="s._change_type <> 'delete'",
        )
        .execute()
    )


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
    new_rows, closers = _scd2_rows(pending, keys)
    closed = _close_current_rows(local, closers, keys, schema)
    write_deltalake(
        local,
        _to_arrow(new_rows, schema),
        mode="append",
        commit_properties=_commit(keys, last_version),
    )
    return {"closed": closed, "inserted": len(new_rows), "applied_version": last_version}


def _scd2_rows(pending: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The new type-2 rows of ``pending`` and, per changed key, when its current row closes."""
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
    return new_rows, closers


def _close_current_rows(
    local: str, closers: pd.DataFrame, keys: list[str], schema: pa.Schema
) -> int:
    """Close the current row of every key in ``closers`` (one ``MERGE``); the number closed."""
    import pyarrow as pa
    from deltalake import DeltaTable

    closers_schema = pa.schema(
        [
            *(schema.field(k) for k in keys),
            pa.field("close_at", schema.field("valid_from").type),
            pa.field("close_version", schema.field("start_version").type),
        ]
    )
    merged = (
        DeltaTable(local)
        .merge(
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
    return int(merged.get("num_target_rows_updated", 0))


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
