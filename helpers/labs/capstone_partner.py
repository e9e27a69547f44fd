"""Lab 5's names and the partner's side of its checks (tasks k5-k7), read through the open protocol
with ``partner_west``'s profile; :class:`helpers.labs.capstone_lab.CapstoneLab` uses them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.labs import setup
from helpers.labs.cdf_lab import is_overwrite, scd2
from helpers.labs.core import CheckFailed, expect, is_whole_number

LAB = "capstone"
SHARE = "partner_share"
CATALOG_SHARE = "product_catalog"
CONTACTS = "retail.partners.contacts"
PRICES = "retail.partners.regional_prices"
VIEW = "retail.partners.partner_customers"
VIEW_ALIAS = "crm.customers"
PRICES_ALIAS = "pricing.prices"
PRODUCTS = "retail.sales.products"
#: recipient -> the properties the task asks for (stated in the task text).
PARTNERS: dict[str, dict[str, str]] = {
    "partner_west": {"region": "West", "tier": "gold"},
    "partner_east": {"region": "East", "tier": "silver"},
}
READER = "partner_west"  # the partner whose side the learner plays
RESTRICTED = "partner_east"  # the partner the IP access list restricts
IP_RANGE = "192.0.2.0/24"  # a documentation range (RFC 5737): no real host connects from it
KEY = "product_id"


class PartnerChecks:
    """The partner's side: its profile, and the checks of tasks k5-k7 (a mixin of the lab)."""

    home: str | os.PathLike[str] | None
    catalog: Any
    _profile: Path | None
    _start: int | None
    _copy_version: int | None

    def _recipient(self, name: str) -> Any:
        from helpers.exceptions import NotFoundError

        try:
            return self.catalog.get_recipient(name)
        except NotFoundError:
            return None

    def _has_grant(self, share: str, recipient: str) -> bool:
        if not any(s.name.lower() == share for s in self.catalog.list_shares()):
            return False
        return recipient in {g.recipient.lower() for g in self.catalog.grants_on_share(share)}

    def partner_profile(self) -> Path:
        """The profile of ``partner_west`` (issued once per lab object; the checks read with it). Before
        the partner exists (task k1), the path where it will be, with a note."""
        if self._profile is None or not self._profile.exists():
            if self._recipient(READER) is None:
                print(f"⏳ no profile yet: {READER} does not exist (task k1)")
                return setup.lab_home(self.home).profiles_dir / "lab5_partner_west.share"
            self._profile = setup.issue_profile(READER, self.home, name="lab5_partner_west")
        return self._profile

    def url(self, alias: str, share: str = SHARE) -> str:
        return f"{self.partner_profile()}#{share}.{alias}"

    def _history(self, path: Any) -> tuple[Any, pd.DataFrame]:
        from deltalake import DeltaTable

        expect(
            isinstance(path, str | Path) and Path(path, "_delta_log").is_dir(),
            f"answer with the path of your local Delta table (scd2_path), not {path!r}",
        )
        table = DeltaTable(str(path))
        frame = table.to_pandas()
        needed = {KEY, "valid_from", "valid_to", "is_current"}
        expect(
            needed <= set(frame.columns),
            f"your history needs the columns {sorted(needed)}; it lacks "
            f"{sorted(needed - set(frame.columns))}",
        )
        return table, frame

    def _require_reader(self) -> None:
        expect(
            self._has_grant(SHARE, READER),
            f"{READER} has no grant on {SHARE} yet: finish task k3 first",
        )

    def _check_k5(self, path: Any) -> None:
        import delta_sharing
        from deltalake import DeltaTable

        self._require_reader()
        table, frame = self._history(path)
        # the snapshot is the last full write; later merges and appends are task k6's (check_all)
        writes = [int(h["version"]) for h in table.history() if is_overwrite(h)]
        if writes and max(writes) < table.version():
            table = DeltaTable(str(path), version=max(writes))
            frame = table.to_pandas()
        starts = set(pd.to_numeric(frame["valid_from"]).dropna().astype(int))
        expect(
            len(starts) == 1,
            "a fresh history has one valid_from for every row: the version of the snapshot "
            "(write it again with mode='overwrite')",
        )
        start = starts.pop()
        url = self.url(PRICES_ALIAS)
        expect(
            0 <= start <= int(delta_sharing.get_table_version(url)),
            f"valid_from {start} is not a version of the shared price list; ask the server "
            "(delta_sharing.get_table_version)",
        )
        expect(
            frame["valid_to"].isna().all() and frame["is_current"].astype(bool).all(),
            "every row of the snapshot is current: valid_to empty and is_current True",
        )
        snapshot = delta_sharing.load_as_pandas(url, version=start)
        mine = frame[list(snapshot.columns)]
        expect(
            len(mine) == len(snapshot) and _rows(mine).equals(_rows(snapshot)),
            f"your rows are not {READER}'s price list as of version {start} (read it with "
            "load_as_pandas(url, version=...) as partner_west, not from the provider's table)",
        )
        self._start, self._copy_version = start, table.version()

    def _check_k6(self, path: Any) -> None:
        import delta_sharing

        self._require_reader()
        expect(
            self._start is not None,
            "check task k5 first: the history starts at its snapshot",
        )
        start = int(self._start or 0)
        table, frame = self._history(path)
        restart = (
            "start it again (task k5, check it), let the provider change its prices again (the "
            "provider cell), then apply the feed"
        )
        expect(
            table.version() >= (self._copy_version or 0),
            f"your history was recreated after task k5; {restart}",
        )
        later = [
            h for h in table.history() if int(h.get("version", -1)) > (self._copy_version or 0)
        ]
        expect(bool(later), "your history has no commit since task k5: apply the change feed to it")
        method_ok = not any(is_overwrite(h) for h in later)
        url = self.url(PRICES_ALIAS)
        snapshot = delta_sharing.load_as_pandas(url, version=start)
        feed = delta_sharing.load_table_changes_as_pandas(url, starting_version=start + 1)
        expected = scd2(snapshot, feed, start, key=KEY)
        mine = frame.copy()
        for col in ("valid_from", "valid_to"):
            mine[col] = pd.to_numeric(mine[col], errors="coerce").astype("Int64")
        spans = [KEY, "valid_from", "valid_to", *[c for c in snapshot.columns if c != KEY]]
        expect(
            set(spans) <= set(mine.columns),
            f"your history lacks the price list's columns {sorted(set(spans) - set(mine.columns))}",
        )

        def keyset(f: pd.DataFrame) -> set[tuple[str, ...]]:
            return set(f[spans].astype(str).itertuples(index=False, name=None))

        spans_ok = len(mine) == len(expected) and keyset(mine) == keyset(expected)
        current = mine[mine["is_current"].astype(bool)]
        now = delta_sharing.load_as_pandas(url)
        current_ok = (
            set(now.columns) <= set(current.columns)
            and len(current) == len(now)
            and _rows(current[list(now.columns)]).equals(_rows(now))
            and bool((current["valid_to"].isna()).all())
        )
        notes = []
        if not spans_ok:
            wrong = len(keyset(mine) ^ keyset(expected))
            notes.append(
                f"{wrong} rows (product, valid_from, valid_to and the values) differ from the feed's "
                "history: a closed row keeps the values it had; one product changed twice and one "
                "was withdrawn and listed again; read the feed after the last version your history "
                "holds and apply every change in commit order"
            )
        if not current_ok:
            notes.append(
                "the rows with is_current = True are not your current price list (exactly one open "
                "row per listed product, valid_to empty)"
            )
        if not method_ok:
            notes.append(
                "your history was overwritten instead of kept: a type 2 dimension only closes rows "
                f"(merge) and adds rows (append); {restart}"
            )
        if notes:
            raise CheckFailed("; ".join(notes), credit=(spans_ok + current_ok + method_ok) / 3)

    def _check_k7(self, answer: Any) -> None:
        import delta_sharing

        self._require_reader()
        expect(
            isinstance(answer, tuple | list) and len(answer) == 2,
            "answer with a tuple (category, number of customers you can e-mail)",
        )
        prices = delta_sharing.load_as_pandas(self.url(PRICES_ALIAS))
        products = delta_sharing.load_as_pandas(self.url("sales.products", CATALOG_SHARE))
        means = prices.merge(products, on=KEY).groupby("category")["price"].mean()
        top = {str(c).lower() for c in means[means == means.max()].index}
        customers = delta_sharing.load_as_pandas(self.url(VIEW_ALIAS))
        usable = int((customers["email"].notna() & (customers["email"] != "***")).sum())
        category_ok = isinstance(answer[0], str) and answer[0].strip().lower() in top
        count_ok = is_whole_number(answer[1]) and int(answer[1]) == usable
        notes = []
        if not category_ok:
            notes.append(
                f"{answer[0]!r} is not the category with the highest average price in your price "
                f"list now: join {PRICES_ALIAS} with {CATALOG_SHARE}'s products on product_id"
            )
        if not count_ok:
            notes.append(
                f"{answer[1]!r} is not the number of customers you can e-mail: count the rows of "
                f"{VIEW_ALIAS} whose e-mail is neither empty (NULL) nor masked"
            )
        if notes:
            raise CheckFailed("; ".join(notes), credit=(category_ok + count_ok) / 2)


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in a canonical order and form, for comparing tables read different ways."""
    cols = sorted(frame.columns)
    return frame[cols].astype(str).sort_values(cols).reset_index(drop=True)


def wait_for_status(
    home: str | os.PathLike[str] | None, recipient: str, status: int, timeout: float = 15.0
) -> int:
    """Wait until the (batched) audit holds a request of ``recipient`` answered with ``status``."""
    import time

    from helpers.catalog import open_catalog

    catalog = open_catalog(home)
    deadline = time.monotonic() + timeout
    while True:
        audit = catalog.audit_frame()
        n = int(
            ((audit["recipient"].str.lower() == recipient) & (audit["status_code"] == status)).sum()
        )
        if n or time.monotonic() > deadline:
            return n
        time.sleep(0.2)
