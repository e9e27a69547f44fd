"""Lab 3, change data feed: a recipient keeps a local copy of a shared table in sync.

The lab plays the provider (:meth:`CdfLab.provider_changes` commits real INSERT/UPDATE/DELETE/MERGE
statements); the learner remembers a version, copies the table, reads the changes through the open protocol
and applies them. The checks compare the learner's copy with the provider's table as the protocol serves it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.labs import setup
from helpers.labs.core import CheckFailed, Task, check_all, expect, is_whole_number

LAB = "cdf"
SHARE = "lab_cdf_share"
RECIPIENT = "lab_cdf_recipient"
SOURCE = "airline.sales_domain.customers"
TABLE = "labs.crm.customers"
KEY = "customer_id"


class CdfLab:
    """Tasks ``c1`` … ``c4``; ``url`` is the shared table's ``profile#share.schema.table`` address."""

    def __init__(
        self, profile_path: str | os.PathLike[str], home: str | os.PathLike[str] | None = None
    ) -> None:
        self.home = home
        self.profile_path = str(profile_path)
        self.url = f"{self.profile_path}#{SHARE}.crm.customers"
        self._start_version: int | None = None
        self._copy_version: int | None = None  # the local copy's Delta version when c2 passed
        self.c1 = Task(
            LAB,
            "c1",
            "Remember the shared table's current version",
            self._check_c1,
            hints=(
                "The protocol tells the version without reading any data.",
                "delta_sharing.get_table_version(url)",
            ),
        )
        self.c2 = Task(
            LAB,
            "c2",
            "Copy the table as of that version into a local Delta table",
            self._check_c2,
            hints=(
                "load_as_pandas takes a version; deltalake's write_deltalake writes the copy.",
                "write_deltalake(local_path, delta_sharing.load_as_pandas(url, version=start_version), "
                "mode='overwrite')",
            ),
        )
        self.c3 = Task(
            LAB,
            "c3",
            "Load every change committed after that version",
            self._check_c3,
            hints=(
                "load_table_changes_as_pandas reads the change data feed.",
                "delta_sharing.load_table_changes_as_pandas(url, starting_version=start_version + 1)",
            ),
        )
        self.c4 = Task(
            LAB,
            "c4",
            "Apply the changes to your copy (SCD type 1)",
            self._check_c4,
            hints=(
                "Keep only the last change per key: deletes remove the row, inserts and "
                "update_postimage rows replace it; update_preimage rows are not new state.",
                "DeltaTable(local_path).merge(latest, 'target.customer_id = source.customer_id', "
                "source_alias='source', target_alias='target') with when_matched_delete for "
                "deletes, when_matched_update_all and when_not_matched_insert_all otherwise",
            ),
            points=2.0,
        )
        self.c5 = Task(
            LAB,
            "c5",
            "Keep the customers' history (SCD type 2) from the snapshot and the feed",
            self._check_c5,
            hints=(
                "Start with one row per customer of the snapshot (valid_from = start_version); each "
                "insert or update_postimage at version v closes the key's open row (valid_to = v) and "
                "opens a new one (valid_from = v); a delete at v only closes it.",
                "walk the feed sorted by _commit_version, keep a dict key -> open row, append closed "
                "rows to a list; is_current = valid_to is None; pd.DataFrame(rows)",
            ),
            points=2.0,
        )

    def check_all(self) -> None:
        """Check every task again and print the points."""
        check_all(self)

    # -- the provider's side, played by the lab ------------------------------------------------
    def provider_changes(self) -> pd.DataFrame:
        """Commit an INSERT, an UPDATE, a DELETE and a MERGE on the shared table; return DESCRIBE HISTORY."""
        from helpers.provider import Provider

        provider = Provider(self.home)
        top = int(provider.sql(f"SELECT max({KEY}) AS m FROM {TABLE}").iloc[0, 0])
        lowest = provider.sql(f"SELECT {KEY} FROM {TABLE} ORDER BY {KEY} LIMIT 3")[KEY].tolist()
        lowest = provider.sql(f"SELECT {KEY} FROM {TABLE} ORDER BY {KEY} LIMIT 5")[KEY].tolist()
        # some keys change twice, one is deleted and inserted again: only the last change per key counts
        provider.sql(f"""
            INSERT INTO {TABLE} SELECT * REPLACE ({top + 1} AS {KEY}, 'new.customer@example.com' AS email)
              FROM {TABLE} WHERE {KEY} = {lowest[0]};
            UPDATE {TABLE} SET email = 'changed@example.com' WHERE {KEY} = {lowest[0]};
            DELETE FROM {TABLE} WHERE {KEY} = {lowest[1]};
            MERGE INTO {TABLE} t
              USING (SELECT * REPLACE ('PLATINUM' AS loyalty_tier) FROM {TABLE} WHERE {KEY} = {lowest[2]}) s
              ON t.{KEY} = s.{KEY}
              WHEN MATCHED THEN UPDATE SET loyalty_tier = s.loyalty_tier;
            UPDATE {TABLE} SET email = 'changed.again@example.com' WHERE {KEY} = {lowest[0]};
            UPDATE {TABLE} SET email = 'updated.new@example.com' WHERE {KEY} = {top + 1};
            DELETE FROM {TABLE} WHERE {KEY} = {lowest[3]};
            INSERT INTO {TABLE} SELECT * REPLACE ({lowest[3]} AS {KEY}, 'back.again@example.com' AS email)
              FROM {TABLE} WHERE {KEY} = {lowest[4]}
        """)
        return provider.sql(f"DESCRIBE HISTORY {TABLE}")

    # -- checks -------------------------------------------------------------------------------
    def _version_now(self) -> int:
        import delta_sharing

        return int(delta_sharing.get_table_version(self.url))

    def _check_c1(self, answer: Any) -> None:
        expect(is_whole_number(answer), f"answer with the version number (an int), not {answer!r}")
        expect(
            int(answer) == self._version_now(),
            "that is not the table's current version; ask the server, do not guess",
        )
        self._start_version = int(answer)

    def _check_c2(self, local_path: Any) -> None:
        import delta_sharing
        from deltalake import DeltaTable

        expect(isinstance(local_path, str | Path), "answer with the path of your local Delta table")
        expect(Path(local_path, "_delta_log").is_dir(), f"{local_path} is not a Delta table yet")
        expect(self._start_version is not None, "check c1 first: the copy is taken at that version")
        copy = DeltaTable(str(local_path))
        mine = copy.to_pandas()
        theirs = delta_sharing.load_as_pandas(self.url, version=self._start_version)
        _expect_same_rows(mine, theirs, f"the table as of version {self._start_version}")
        self._copy_version = copy.version()

    def _check_c3(self, changes: Any) -> None:
        import delta_sharing

        expect(isinstance(changes, pd.DataFrame), "answer with the DataFrame of changes")
        expect(
            "_change_type" in changes.columns,
            "the changes need the _change_type column: load them with load_table_changes_as_pandas",
        )
        expect(self._start_version is not None, "check c1 first")
        assert self._start_version is not None  # expect() raised otherwise
        versions = pd.to_numeric(changes["_commit_version"])
        expect(
            len(changes) > 0,
            "no changes: did the provider cell run after you remembered the version?",
        )
        expect(
            bool((versions > self._start_version).all()),
            f"some changes are from version {self._start_version} or earlier, which your copy holds already",
        )
        expected = delta_sharing.load_table_changes_as_pandas(
            self.url, starting_version=self._start_version + 1
        )
        expect(
            len(changes) == len(expected),
            f"{len(changes)} change rows, but the feed has more or fewer after version {self._start_version}",
        )

    def _check_c4(self, local_path: Any) -> None:
        import delta_sharing
        from deltalake import DeltaTable

        expect(isinstance(local_path, str | Path), "answer with the path of your local Delta table")
        expect(Path(local_path, "_delta_log").is_dir(), f"{local_path} is not a Delta table")
        expect(self._copy_version is not None, "check c2 first: the copy starts at start_version")
        copy = DeltaTable(str(local_path))
        later = [h for h in copy.history() if int(h.get("version", -1)) > (self._copy_version or 0)]
        restart = (
            "rewrite the copy as of start_version (task c2, check it again), then apply the feed"
        )
        expect(
            copy.version() >= (self._copy_version or 0),
            f"your copy was recreated after task c2; {restart}",
        )
        reloads = [h for h in later if is_overwrite(h)]
        expect(
            not reloads,
            f"your copy was reloaded in full (an overwrite at version {reloads[0]['version'] if reloads else ''}) "
            f"instead of being maintained from the change feed; {restart} with a merge",
        )
        expect(
            bool(later),
            "your copy has no commit since task c2: apply the changes of task c3 to it (a merge)",
        )
        mine = copy.to_pandas()
        theirs = delta_sharing.load_as_pandas(self.url)
        _expect_same_rows(
            mine,
            theirs,
            "the provider's current table (some keys changed more than once: keep the last change)",
        )

    def _check_c5(self, history: Any) -> None:
        import delta_sharing
        from deltalake import DeltaTable

        if isinstance(history, str | Path) and Path(history, "_delta_log").is_dir():
            history = DeltaTable(str(history)).to_pandas()
        expect(
            isinstance(history, pd.DataFrame),
            "answer with the history as a DataFrame (or the path of a Delta table holding it)",
        )
        needed = {KEY, "valid_from", "valid_to", "is_current"}
        expect(
            needed <= set(history.columns),
            f"the history needs the columns {sorted(needed)}; it lacks "
            f"{sorted(needed - set(history.columns))}",
        )
        expect(
            self._start_version is not None, "check c1 first: the history starts at start_version"
        )
        start = int(self._start_version or 0)
        snapshot = delta_sharing.load_as_pandas(self.url, version=start)
        feed = delta_sharing.load_table_changes_as_pandas(self.url, starting_version=start + 1)
        expected = scd2(snapshot, feed, start)
        mine = history.copy()
        mine["valid_to"] = pd.to_numeric(mine["valid_to"], errors="coerce").astype("Int64")
        mine["valid_from"] = pd.to_numeric(mine["valid_from"], errors="coerce").astype("Int64")
        spans = [KEY, "valid_from", "valid_to"]

        def keyset(frame: pd.DataFrame) -> set[tuple[str, ...]]:
            return set(frame[spans].astype(str).itertuples(index=False, name=None))

        intervals_ok = keyset(mine) == keyset(expected) and len(mine) == len(expected)
        current = mine[mine["is_current"].astype(bool)]
        columns = [c for c in snapshot.columns]
        current_ok = sorted(current.columns.intersection(columns)) == sorted(columns) and bool(
            len(current) == len(expected[expected["is_current"]])
            and keyset(current) == keyset(expected[expected["is_current"]])
        )
        if current_ok:
            try:
                _expect_same_rows(current[columns], delta_sharing.load_as_pandas(self.url), "x")
            except AssertionError:
                current_ok = False
        credit = (intervals_ok + current_ok) / 2
        if not intervals_ok:
            wrong = len(keyset(mine) ^ keyset(expected))
            raise CheckFailed(
                f"{wrong} (customer, valid_from, valid_to) spans differ from the feed's history: each "
                "insert or update_postimage opens a row at its commit version and closes the open "
                "one; a delete only closes it; update_preimage rows are not versions",
                credit=credit,
            )
        if not current_ok:
            raise CheckFailed(
                "the spans are right, but the rows with is_current = True are not the provider's "
                "current table (is_current must be True exactly where valid_to is empty)",
                credit=credit,
            )


def is_overwrite(commit: dict[str, Any]) -> bool:
    params = commit.get("operationParameters") or {}
    mode = str(params.get("mode", "")).lower()
    operation = str(commit.get("operation", "")).upper()
    return operation in ("CREATE OR REPLACE TABLE", "REPLACE TABLE") or (
        operation in ("WRITE", "CREATE TABLE") and mode == "overwrite"
    )


def scd2(snapshot: pd.DataFrame, feed: pd.DataFrame, start: int, *, key: str = KEY) -> pd.DataFrame:
    """The type 2 history of ``snapshot`` (taken at version ``start``) after the change ``feed``:
    one row per version of each ``key`` with ``valid_from``, ``valid_to`` (None while open),
    ``is_current``."""
    columns = list(snapshot.columns)
    open_rows: dict[Any, dict[str, Any]] = {
        row[key]: {**row, "valid_from": start} for row in snapshot.to_dict("records")
    }
    closed: list[dict[str, Any]] = []
    ordered = feed[feed["_change_type"] != "update_preimage"].sort_values(
        "_commit_version", kind="stable"
    )
    for change in ordered.to_dict("records"):
        version, value = int(change["_commit_version"]), change[key]
        if value in open_rows:
            closed.append({**open_rows.pop(value), "valid_to": version})
        if change["_change_type"] != "delete":
            open_rows[value] = {**{c: change[c] for c in columns}, "valid_from": version}
    rows = closed + [{**r, "valid_to": None} for r in open_rows.values()]
    frame = pd.DataFrame(rows, columns=[*columns, "valid_from", "valid_to"])
    frame["valid_from"] = frame["valid_from"].astype("Int64")
    frame["valid_to"] = pd.to_numeric(frame["valid_to"]).astype("Int64")
    frame["is_current"] = frame["valid_to"].isna()
    return frame


def _expect_same_rows(mine: pd.DataFrame, theirs: pd.DataFrame, what: str) -> None:
    expect(
        sorted(mine.columns) == sorted(theirs.columns),
        f"your copy's columns differ from {what}: {sorted(set(mine.columns) ^ set(theirs.columns))}",
    )
    cols = sorted(theirs.columns)
    a = mine[cols].sort_values(KEY).reset_index(drop=True).astype(str)
    b = theirs[cols].sort_values(KEY).reset_index(drop=True).astype(str)
    expect(len(a) == len(b), f"your copy has {len(a)} rows, {what} has {len(b)}")
    diff = a.ne(b).any(axis=1)
    expect(
        not diff.any(),
        f"{int(diff.sum())} rows differ from {what}, e.g. {KEY}={a.loc[diff.idxmax(), KEY]}",
    )


def prepare(home: str | os.PathLike[str] | None = None) -> CdfLab:
    """The provider's preparation (idempotent): a CDF-enabled copy of the customers, shared WITH HISTORY."""
    from deltalake import DeltaTable, write_deltalake

    from helpers.catalog import open_catalog
    from helpers.provider import Provider

    setup.ensure_dataset("airline", home)
    lab = setup.lab_home(home)
    catalog = open_catalog(home)
    provider = Provider(home)
    if not catalog.list_tables(catalog="labs", schema="crm"):
        location = lab.data_dir / "labs" / "crm" / "customers"
        snapshot = DeltaTable(catalog.get_table(SOURCE).location).to_pyarrow_table()
        write_deltalake(
            str(location),
            snapshot,
            mode="overwrite",
            configuration={"delta.enableChangeDataFeed": "true"},
        )
        provider.sql(f"CREATE TABLE {TABLE} LOCATION '{location}'")
    provider.sql(f"""
        CREATE SHARE IF NOT EXISTS {SHARE} COMMENT 'Lab 3: customers with their change data feed';
        CREATE RECIPIENT IF NOT EXISTS {RECIPIENT} COMMENT 'Lab 3 learner';
        GRANT SELECT ON SHARE {SHARE} TO RECIPIENT {RECIPIENT};
    """)
    if not any(e.alias.lower() == "crm.customers" for e in catalog.share_entries(SHARE)):
        provider.sql(f"ALTER SHARE {SHARE} ADD TABLE {TABLE} AS crm.customers WITH HISTORY")
    profile = setup.issue_profile(RECIPIENT, home, name="lab3_cdf")
    return CdfLab(profile, home)
