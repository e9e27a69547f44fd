"""Reading through the open protocol: list what a profile grants, load snapshots and change data feeds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from helpers.exceptions import InvalidArgumentError
from helpers.recipient.profile_files import as_profile, profile_path

if TYPE_CHECKING:
    import delta_sharing
    from delta_sharing.protocol import Table

    from helpers.recipient.profile_files import ProfileLike

#: Columns the change data feed adds to every row.
CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
# Order of change types inside one commit: a key deleted and re-inserted in one commit ends inserted.
_CHANGE_RANK = {"update_preimage": 0, "delete": 1, "insert": 2, "update_postimage": 3}


def client(profile: ProfileLike) -> delta_sharing.SharingClient:
    """A :class:`delta_sharing.SharingClient` for a profile path or object."""
    import delta_sharing

    return delta_sharing.SharingClient(as_profile(profile))


def tables(profile: ProfileLike) -> list[Table]:
    """Every table the profile can read, over all its shares (``SharingClient.list_all_tables``)."""
    return list(client(profile).list_all_tables())


def list_tables(profile: ProfileLike) -> pd.DataFrame:
    """The tables a profile grants as a frame: ``share, schema, table, url`` sorted by name.

    ``url`` is the ``<profile>#<share>.<schema>.<table>`` string that :func:`delta_sharing.load_as_pandas`
    takes.
    """
    path = profile_path(profile)
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


def table_url(profile: ProfileLike, share: str, schema: str, table: str) -> str:
    """The client's table URL ``<profile path>#<share>.<schema>.<table>``."""
    return f"{profile_path(profile)}#{share}.{schema}.{table}"


def _split_name(name: str) -> tuple[str, str, str]:
    parts = name.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidArgumentError(f"table name {name!r} must be share.schema.table")
    return parts[0], parts[1], parts[2]


def load(
    profile: ProfileLike,
    name: str,
    *,
    version: int | None = None,
    limit: int | None = None,
    use_delta_format: bool | None = None,
) -> pd.DataFrame:
    """Load one shared table (``share.schema.table``) into pandas through the open protocol."""
    import delta_sharing

    share, schema, table = _split_name(name)
    frame: pd.DataFrame = delta_sharing.load_as_pandas(
        table_url(profile, share, schema, table),
        version=version,
        limit=limit,
        use_delta_format=use_delta_format,
    )
    return frame


def table_version(profile: ProfileLike, name: str) -> int:
    """The current version of a shared table, as the server reports it."""
    import delta_sharing

    share, schema, table = _split_name(name)
    return int(delta_sharing.get_table_version(table_url(profile, share, schema, table)))


def changes(
    profile: ProfileLike,
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
