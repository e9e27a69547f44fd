"""Lab 5, capstone: share a partner product as the provider, then keep and query it as a partner.

As the provider the learner gives two partners their properties, writes a shared view with a row filter
(``current_recipient('region')``) and an e-mail mask (``current_recipient('tier')``), puts the view and a
partition-filtered price list (with history) in a share, and restricts one partner with an IP access list.
As the partner ``partner_west`` the learner keeps a slowly changing dimension of type 2 of the price list
from the change data feed (the lab plays the provider's changes in between) and answers questions that join
two shares. Every check reads the real state: the catalog, the server's audit, the copy's Delta history, and
the data as each partner gets it through the open protocol. No expected value is written down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.labs import setup
from helpers.labs.capstone_partner import (  # noqa: F401 - the lab's names, used by the hidden checks
    CATALOG_SHARE,
    CONTACTS,
    IP_RANGE,
    KEY,
    LAB,
    PARTNERS,
    PRICES,
    PRICES_ALIAS,
    PRODUCTS,
    READER,
    RESTRICTED,
    SHARE,
    VIEW,
    VIEW_ALIAS,
    PartnerChecks,
    wait_for_status,
)
from helpers.labs.core import CheckFailed, Task, check_all, expect, is_whole_number

PREPARE_SQL = f"""
CREATE SCHEMA IF NOT EXISTS retail.partners COMMENT 'Data products for retail partners';
CREATE TABLE IF NOT EXISTS {CONTACTS}
  COMMENT 'Customers with their e-mail addresses (personal data)'
  AS SELECT customer_id, segment, home_region, home_city,
            CASE WHEN customer_id % 10 = 0 THEN NULL
                 ELSE 'customer' || customer_id || '@example.com' END AS email
     FROM retail.sales.customers;
CREATE TABLE IF NOT EXISTS {PRICES}
  PARTITIONED BY (region)
  COMMENT 'Price list per region'
  TBLPROPERTIES (delta.enableChangeDataFeed = true)
  AS SELECT p.product_id, r.region,
            round(p.base_price * CASE r.region WHEN 'West' THEN 1.10 WHEN 'East' THEN 1.05
                                               ELSE 1.0 END, 2) AS price
     FROM {PRODUCTS} p CROSS JOIN (SELECT DISTINCT region FROM retail.sales.stores) r;
CREATE SHARE IF NOT EXISTS {CATALOG_SHARE} COMMENT 'The product catalogue, for every partner'
"""


class CapstoneLab(PartnerChecks):
    """Tasks ``k1`` … ``k7``: the provider's side (k1-k4), then ``partner_west``'s (k5-k7)."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        from helpers.provider import Provider

        self.home = home
        self.provider = Provider(home)
        self.catalog = self.provider.catalog
        self._profile: Path | None = None
        self._start: int | None = None  # the price list's version the SCD2 copy starts at (k5)
        self._copy_version: int | None = None  # the copy's Delta version when k5 passed
        self._provider_tasks()
        self._partner_tasks()

    def _provider_tasks(self) -> None:
        self.k1 = Task(
            LAB,
            "k1",
            "Create the two partners with their region and tier properties",
            self._check_k1,
            hints=(
                "CREATE RECIPIENT ... PROPERTIES ('key' = 'value', ...) sets properties; ALTER RECIPIENT "
                "... SET PROPERTIES changes them on a recipient that exists.",
                "CREATE RECIPIENT IF NOT EXISTS partner_west; ALTER RECIPIENT partner_west SET "
                "PROPERTIES ('region' = 'West', 'tier' = 'gold'); the same for partner_east "
                "(East, silver)",
            ),
            points=2.0,
        )
        self.k2 = Task(
            LAB,
            "k2",
            "A view with a row filter and an e-mail mask by recipient",
            self._check_k2,
            hints=(
                "current_recipient('prop') is the reading partner's property: compare the region "
                "column with it in WHERE, and choose the e-mail in a CASE on the tier.",
                f"CREATE OR REPLACE VIEW {VIEW} AS SELECT customer_id, segment, home_region, "
                "home_city, CASE WHEN current_recipient('tier') = 'gold' THEN email ELSE '***' END "
                f"AS email FROM {CONTACTS} WHERE home_region = current_recipient('region')",
            ),
            points=2.0,
        )
        self.k3 = Task(
            LAB,
            "k3",
            "The partner share: the view, each partner's price partition with history, the grants",
            self._check_k3,
            hints=(
                "ALTER SHARE ... ADD VIEW adds a view; ADD TABLE ... PARTITION (col = "
                "CURRENT_RECIPIENT().prop) gives each recipient its partition; WITH HISTORY lets them "
                "read the change data feed.",
                f"ALTER SHARE {SHARE} ADD VIEW {VIEW} AS {VIEW_ALIAS}; ALTER SHARE {SHARE} ADD TABLE "
                f"{PRICES} PARTITION (region = CURRENT_RECIPIENT().region) AS {PRICES_ALIAS} WITH "
                f"HISTORY; GRANT SELECT ON SHARE {SHARE} (and {CATALOG_SHARE}) TO RECIPIENT each "
                "partner",
            ),
            points=3.0,
        )
        self.k4 = Task(
            LAB,
            "k4",
            f"Restrict {RESTRICTED} to {IP_RANGE}: how many of its requests were refused?",
            self._check_k4,
            hints=(
                "ALTER RECIPIENT ... SET IP ACCESS LIST (...) takes addresses or CIDR ranges; every "
                "refused request is an audit row with status 403.",
                f"ALTER RECIPIENT {RESTRICTED} SET IP ACCESS LIST ('{IP_RANGE}'); after the read "
                "cell: SELECT count(*) FROM system.access.audit WHERE recipient = "
                f"'{RESTRICTED}' AND status_code = 403",
            ),
            points=2.0,
        )

    def _partner_tasks(self) -> None:
        self.k5 = Task(
            LAB,
            "k5",
            "As partner_west: start the price history (SCD type 2) from a snapshot",
            self._check_k5,
            hints=(
                "Read your price partition at its current version and write it to a local Delta "
                "table with valid_from = that version, valid_to empty (an integer column) and "
                "is_current = True.",
                "v = delta_sharing.get_table_version(url); snap = delta_sharing.load_as_pandas(url, "
                "version=v); snap['valid_from'] = v; snap['valid_to'] = pd.array([None] * len(snap), "
                "dtype='Int64'); snap['is_current'] = True; write_deltalake(scd2_path, snap, "
                "mode='overwrite', schema_mode='overwrite')",
            ),
        )
        self.k6 = Task(
            LAB,
            "k6",
            "Apply the change feed to the history: close changed rows, add their new versions",
            self._check_k6,
            hints=(
                "Read the feed after the last version your history holds; each insert or "
                "update_postimage closes the key's open row (valid_to = its version) and opens a new "
                "one; a delete only closes it. Write the closing with a merge and the new rows with an "
                "append: never overwrite the history.",
                "walk the feed sorted by _commit_version with a dict key -> open row; merge "
                "(target.product_id = source.product_id AND target.is_current) "
                ".when_matched_update({'valid_to': 'source.valid_to', 'is_current': 'false'}); "
                "write_deltalake(scd2_path, new_rows, mode='append')",
            ),
            points=3.0,
        )
        self.k7 = Task(
            LAB,
            "k7",
            "Across shares: the priciest category in your price list, and how many customers you "
            "can e-mail",
            self._check_k7,
            hints=(
                f"Join your prices ({SHARE}.{PRICES_ALIAS}) with the products of {CATALOG_SHARE} "
                "on product_id; in the view, an address you can use is neither masked nor empty.",
                "mount(profile).execute(...): SELECT category FROM ... GROUP BY category ORDER BY avg(price) DESC "
                f"LIMIT 1; SELECT count(*) FROM {SHARE}.crm.customers WHERE email IS NOT NULL AND "
                "email <> '***'; answer (category, count)",
            ),
            points=2.0,
        )

    def check_all(self) -> None:
        """Check every task again and print the points."""
        check_all(self)

    def run(self, sql: Any) -> pd.DataFrame | None:
        """Run a learner's SQL cell statement by statement, showing errors instead of raising."""
        from helpers.labs.provider_lab import run_sql

        return run_sql(self.provider, sql)

    # -- the partners' side, played by the lab -------------------------------------------------
    def partner_reads(self, recipient: str) -> pd.DataFrame | None:
        """Read every table of every share ``recipient`` may see, through the server; one row per table
        (or the refusal). The IP access list's effect shows here."""
        import delta_sharing
        import requests

        if not self._has_grant(SHARE, recipient):
            print(f"⏳ skipped: {recipient} has no grant on {SHARE} yet (task k3)")
            return None
        profile = (
            self.partner_profile()
            if recipient == READER
            else setup.issue_profile(recipient, self.home, name=f"lab5_{recipient}")
        )
        rows = []
        try:
            for t in delta_sharing.SharingClient(str(profile)).list_all_tables():
                frame = delta_sharing.load_as_pandas(f"{profile}#{t.share}.{t.schema}.{t.name}")
                masked = int((frame["email"] == "***").sum()) if "email" in frame else None
                rows.append(
                    {
                        "table": f"{t.share}.{t.schema}.{t.name}",
                        "rows": len(frame),
                        "masked": masked,
                    }
                )
        except requests.HTTPError as exc:
            status = exc.response.status_code
            print(
                f"🚫 {recipient}: refused with HTTP {status}: {exc.response.json().get('message')}"
            )
            wait_for_status(self.home, recipient, status)
            return None
        setup.wait_for_audit(self.home, recipient, "queryTable", len(rows))
        return pd.DataFrame(rows)

    def provider_changes(self) -> pd.DataFrame:
        """The provider changes its price list (each statement a Delta commit): West prices change, one
        of them twice, one West product is withdrawn and listed again, a new one is added, and East
        prices change too. Returns DESCRIBE HISTORY."""
        ids = self.provider.sql(f"SELECT DISTINCT {KEY} FROM {PRICES} ORDER BY {KEY} LIMIT 4")[
            KEY
        ].tolist()
        top = int(self.provider.sql(f"SELECT max({KEY}) FROM {PRICES}").iloc[0, 0])
        a, b, c, d = (int(x) for x in ids)
        self.provider.sql(f"""
            UPDATE {PRICES} SET price = round(price * 0.9, 2) WHERE region = 'West' AND {KEY} = {a};
            UPDATE {PRICES} SET price = round(price * 1.2, 2) WHERE region = 'East';
            DELETE FROM {PRICES} WHERE region = 'West' AND {KEY} = {b};
            INSERT INTO {PRICES} VALUES ({top + 1}, 'West', 99.0), ({top + 1}, 'East', 95.0);
            UPDATE {PRICES} SET price = round(price * 0.8, 2) WHERE region = 'West' AND {KEY} IN ({a}, {c});
            INSERT INTO {PRICES} VALUES ({b}, 'West', 5.55);
            UPDATE {PRICES} SET price = price + 1 WHERE region = 'Central' AND {KEY} = {d}
        """)
        return self.provider.sql(f"DESCRIBE HISTORY {PRICES}")

    # -- provider checks -------------------------------------------------------------------------
    def _check_k1(self, _sql: Any) -> None:
        problems = []
        for name, wanted in PARTNERS.items():
            recipient = self._recipient(name)
            if recipient is None:
                problems.append(f"there is no recipient {name} (SHOW RECIPIENTS)")
                continue
            props = {k.lower(): v for k, v in (recipient.properties or {}).items()}
            wrong = [k for k, v in wanted.items() if props.get(k) != v]
            if wrong:
                problems.append(
                    f"{name}'s propert{'ies' if len(wrong) > 1 else 'y'} {', '.join(wrong)} "
                    "differ from the task's (values are case-sensitive: the view compares them); "
                    f"ALTER RECIPIENT {name} SET PROPERTIES (...) and DESCRIBE RECIPIENT {name}"
                )
        if problems:
            raise CheckFailed("; ".join(problems), credit=(len(PARTNERS) - len(problems)) / 2)

    def _view(self) -> Any:
        from helpers.catalog.views import view_store

        view = view_store(self.catalog).find_view(VIEW)
        expect(
            view is not None,
            f"there is no view {VIEW}; CREATE VIEW {VIEW} AS SELECT ... (SHOW VIEWS IN "
            "retail.partners lists the views)",
        )
        return view

    def _check_k2(self, _sql: Any) -> None:
        view = self._view()
        expect(
            all(self._recipient(n) is not None for n in PARTNERS),
            "create both partners first (task k1): the check reads the view as each of them",
        )
        contacts = self.provider.sql(f"SELECT * FROM {CONTACTS}")
        used = {p.lower() for p in view.properties}
        rows_ok = mask_ok = True
        notes = []
        for name, props in PARTNERS.items():
            seen = self.provider.view_as_recipient(VIEW, name)
            expect(
                {"customer_id", "email"} <= set(seen.columns),
                "the view must keep the customer_id and email columns (mask the e-mail, do not "
                "drop it)",
            )
            mine = contacts[contacts["home_region"] == props["region"]]
            if sorted(seen["customer_id"]) != sorted(mine["customer_id"]) or "region" not in used:
                rows_ok = False
            emails = seen.set_index("customer_id")["email"]
            if props["tier"] == "gold":
                truth = mine.set_index("customer_id")["email"]
                shown = emails.reindex(truth.index)
                if not (shown.fillna("<null>") == truth.fillna("<null>")).all():
                    mask_ok = False
            elif not (emails.dropna() == "***").all() or emails.dropna().empty:
                mask_ok = False
        mask_ok = mask_ok and "tier" in used
        if not rows_ok:
            notes.append(
                "each partner must get exactly its region's customers, decided by "
                "current_recipient('region') in the view (not by region names written in the view)"
            )
        if not mask_ok:
            notes.append(
                "the gold partner must see the e-mails and the others '***', decided by "
                "current_recipient('tier') (provider.view_as_recipient(view, partner) previews it)"
            )
        if notes:
            raise CheckFailed(
                "; ".join(notes) + f"; CREATE OR REPLACE VIEW {VIEW} ...",
                credit=(rows_ok + mask_ok) / 2,
            )

    def _check_k3(self, _sql: Any) -> None:
        from helpers.catalog.views import view_store

        expect(
            any(s.name.lower() == SHARE for s in self.catalog.list_shares()),
            f"there is no share {SHARE}; CREATE SHARE IF NOT EXISTS {SHARE} COMMENT '...'",
        )
        views = [e for e in view_store(self.catalog).share_views(SHARE) if e.view.name == VIEW]
        view_ok = bool(views) and views[0].alias.lower() == VIEW_ALIAS
        prices_loc = self.catalog.get_table(PRICES).location
        entries = [t for t in self.catalog.shared_tables(SHARE) if t.location == prices_loc]
        table_ok = (
            len(entries) == 1
            and f"{entries[0].schema}.{entries[0].name}".lower() == PRICES_ALIAS
            and entries[0].history
            and any(
                c.column.lower() == "region" and c.is_property and str(c.value).lower() == "region"
                for c in entries[0].partition_filter
            )
        )
        grants_ok = all(self._has_grant(s, r) for s in (SHARE, CATALOG_SHARE) for r in PARTNERS)
        notes = []
        if not view_ok:
            notes.append(
                f"the view is not in {SHARE} as {VIEW_ALIAS} (ALTER SHARE {SHARE} ADD VIEW {VIEW} AS "
                f"{VIEW_ALIAS}; REMOVE VIEW a wrong alias first)"
            )
        if not table_ok:
            notes.append(
                f"{PRICES} must be in {SHARE} once, as {PRICES_ALIAS}, WITH HISTORY and with "
                "PARTITION (region = CURRENT_RECIPIENT().region) (SHOW ALL IN SHARE shows what is "
                f"there; ALTER SHARE {SHARE} REMOVE TABLE <alias> and add it again)"
            )
        if not grants_ok:
            notes.append(
                f"both partners need SELECT on {SHARE} and on {CATALOG_SHARE} "
                f"(SHOW GRANTS ON SHARE {SHARE})"
            )
        if notes:
            raise CheckFailed("; ".join(notes), credit=(view_ok + table_ok + grants_ok) / 3)

    def _check_k4(self, answer: Any) -> None:
        from helpers.catalog.views import view_store

        store = view_store(self.catalog)
        restricted = self._recipient(RESTRICTED)
        expect(restricted is not None, f"create {RESTRICTED} first (task k1)")
        current = store.ip_access_list(restricted.id)
        reader = self._recipient(READER)
        list_ok = current == (IP_RANGE,) and (
            reader is None or store.ip_access_list(reader.id) is None
        )
        audit = self.catalog.audit_frame()
        refused = audit[
            (audit["recipient"].str.lower() == RESTRICTED) & (audit["status_code"] == 403)
        ]
        count_ok = is_whole_number(answer) and len(refused) > 0 and int(answer) == len(refused)
        notes = []
        if not list_ok:
            notes.append(
                f"{RESTRICTED}'s IP access list must be exactly ('{IP_RANGE}') and {READER} must have "
                f"none (DESCRIBE RECIPIENT shows ip_access_list; ALTER RECIPIENT ... SET / UNSET IP "
                "ACCESS LIST)"
            )
        if len(refused) == 0:
            notes.append(
                f"the audit holds no refused (403) request of {RESTRICTED}: set the list, then run "
                "the read cell above"
            )
        elif not count_ok:
            notes.append(
                f"{answer!r} is not the number of {RESTRICTED}'s refused requests: its reads before "
                "the list were allowed, so filter on the recipient and on status_code = 403"
            )
        if notes:
            raise CheckFailed("; ".join(notes), credit=(list_ok + count_ok) / 2)

    # -- recipient checks ------------------------------------------------------------------------


def prepare(home: str | os.PathLike[str] | None = None) -> CapstoneLab:
    """Retail data, the partner tables (contacts, the regional price list with its change data feed),
    the product catalogue share, and a running server (idempotent)."""
    setup.ensure_dataset("retail", home)
    lab = CapstoneLab(home)
    lab.provider.sql(PREPARE_SQL)
    if not lab.catalog.shared_tables(CATALOG_SHARE):
        lab.provider.sql(f"ALTER SHARE {CATALOG_SHARE} ADD TABLE {PRODUCTS}")
    setup.ensure_server(home)
    return lab
