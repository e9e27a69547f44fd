"""Lab 1, provider: the store-inventory counterpart of the Databricks course's TechWare lab.

The learner inspects the retail tables, creates a share, adds tables, creates a recipient, grants, and reads
the audit log after the recipient has read the share. Checks look at the catalog's real state and at the data;
expected values are computed when checking, never written down.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from helpers.labs import setup
from helpers.labs.core import CheckFailed, Task, check_all, expect, is_blank, is_whole_number

LAB = "provider"
SHARE = "store_inventory"
RECIPIENT = "regional_store"
PRODUCTS = "retail.sales.products"
STORES = "retail.sales.stores"
INVENTORY = "retail.sales.inventory_snapshots"
#: a second reader of the share, so that the audit holds more than one recipient's requests (task p7).
OTHER_READER = "head_office"
#: the learner's own table (task p8), made in SQL as the Databricks course makes its tables.
OWN_CATALOG = "store_ops"
OWN_SCHEMA = "planning"
OWN_TABLE = f"{OWN_CATALOG}.{OWN_SCHEMA}.restock_plan"
OWN_COLUMNS = {"store_id": "int32", "product_id": "int32", "quantity": "int32"}


def run_sql(provider: Any, sql: Any) -> pd.DataFrame | None:
    """Run ``sql`` one statement at a time; print errors instead of raising. After an
    :class:`AlreadyExistsError` the remaining statements still run (the object is kept as it is)."""
    if is_blank(sql):
        print("⏳ not run: replace ____ with your SQL first")
        return None
    from helpers.exceptions import AlreadyExistsError
    from helpers.sql import parse

    try:
        texts = parse(sql).texts
    except Exception as exc:  # a parse error: nothing ran
        print(f"❌ {type(exc).__name__}: {exc}")
        return None
    result = None
    for text in texts:
        try:
            result = provider.sql(text)
        except AlreadyExistsError as exc:
            print(f"ℹ️  {exc}: kept as it is, going on with the next statement")
            print(
                "   (to change a comment: COMMENT ON SHARE|RECIPIENT <name> IS '...'; "
                "or DROP it and CREATE it again)"
            )
        except Exception as exc:  # the learner must see the message, not a traceback
            print(f"❌ {type(exc).__name__}: {exc}")
            return None
    return result


class ProviderLab:
    """Tasks ``p1`` … ``p8``; :meth:`run` executes a learner's SQL without ever raising."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        from helpers.provider import Provider

        self.home = home
        self.provider = Provider(home)
        self.catalog = self.provider.catalog
        self.p1 = Task(
            LAB,
            "p1",
            "How many products, in how many categories?",
            self._check_p1,
            hints=(
                "Query retail.sales.products; count rows and distinct categories.",
                "SELECT count(*), count(DISTINCT category) FROM retail.sales.products; "
                "answer as a tuple (products, categories)",
            ),
        )
        self.p2 = Task(
            LAB,
            "p2",
            "Which region has the most stores?",
            self._check_p2,
            hints=(
                "retail.sales.stores has a region column.",
                "SELECT region, count(*) AS n FROM retail.sales.stores GROUP BY region "
                "ORDER BY n DESC LIMIT 1",
            ),
        )
        self.p3 = Task(
            LAB,
            "p3",
            f"Create the share {SHARE} with a comment",
            self._check_p3,
            hints=(
                "CREATE SHARE takes an optional COMMENT clause; COMMENT ON SHARE changes the comment "
                "of a share that exists already.",
                f"CREATE SHARE IF NOT EXISTS {SHARE}; "
                f"COMMENT ON SHARE {SHARE} IS 'Inventory for regional stores' "
                "(works whether or not the share exists already)",
            ),
        )
        self.p4 = Task(
            LAB,
            "p4",
            "Add the products and inventory_snapshots tables to the share",
            self._check_p4,
            hints=(
                "ALTER SHARE ... ADD TABLE takes a three-part table name.",
                f"ALTER SHARE {SHARE} ADD TABLE {PRODUCTS}; "
                f"ALTER SHARE {SHARE} ADD TABLE {INVENTORY}",
            ),
        )
        self.p5 = Task(
            LAB,
            "p5",
            f"Create the recipient {RECIPIENT} with a comment",
            self._check_p5,
            hints=(
                "CREATE RECIPIENT issues a one-time activation link.",
                f"CREATE RECIPIENT IF NOT EXISTS {RECIPIENT} COMMENT 'Regional store team'",
            ),
        )
        self.p6 = Task(
            LAB,
            "p6",
            f"Grant the share to {RECIPIENT}",
            self._check_p6,
            hints=(
                "Privileges on shares are granted to recipients.",
                f"GRANT SELECT ON SHARE {SHARE} TO RECIPIENT {RECIPIENT}",
            ),
        )
        self.p7 = Task(
            LAB,
            "p7",
            f"How many queryTable requests has {RECIPIENT} made? (system.access.audit)",
            self._check_p7,
            hints=(
                "The audit table has one row per request, with recipient and action columns.",
                "SELECT count(*) FROM system.access.audit WHERE recipient = 'regional_store' "
                "AND action = 'queryTable' (or, as in Databricks: WHERE action_name = "
                "'deltaSharingQueryTable' AND request_params['recipient_name'] = 'regional_store')",
            ),
        )
        self.p8 = Task(
            LAB,
            "p8",
            f"Create a table of your own in SQL ({OWN_TABLE}) and share it",
            self._check_p8,
            hints=(
                "As in the Databricks course: CREATE CATALOG IF NOT EXISTS, USE CATALOG, CREATE SCHEMA "
                "IF NOT EXISTS, CREATE TABLE with typed columns and a COMMENT, INSERT INTO ... VALUES, "
                "then ALTER SHARE ... ADD TABLE.",
                f"CREATE CATALOG IF NOT EXISTS {OWN_CATALOG}; USE CATALOG {OWN_CATALOG}; CREATE SCHEMA "
                f"IF NOT EXISTS {OWN_SCHEMA}; USE SCHEMA {OWN_SCHEMA}; CREATE OR REPLACE TABLE "
                "restock_plan (store_id INT, product_id INT, quantity INT) COMMENT '...'; INSERT "
                f"INTO restock_plan VALUES (1, 1, 24), ...; ALTER SHARE {SHARE} ADD TABLE {OWN_TABLE}",
            ),
            points=3.0,
        )

    def check_all(self) -> None:
        """Check every task again and print the points."""
        check_all(self)

    def run(self, sql: Any) -> pd.DataFrame | None:
        """Run a learner's SQL cell statement by statement: show the result, or the error, and never
        raise. A statement whose object exists already is reported and the next ones still run, so a
        cell re-run after a partial first attempt finishes the work."""
        return run_sql(self.provider, sql)

    # -- the recipient's side, played by the lab ----------------------------------------------------
    def recipient_reads(self) -> pd.DataFrame | None:
        """Read every table of the share as the recipient would, through the server, to fill the audit log."""
        import delta_sharing

        try:
            self._require_grant()
        except AssertionError as exc:
            print(f"⏳ skipped: {exc}")
            return None
        profile = setup.issue_profile(RECIPIENT, self.home, name="lab1_regional_store")
        client = delta_sharing.SharingClient(str(profile))
        rows = []
        for table in client.list_all_tables():
            url = f"{profile}#{table.share}.{table.schema}.{table.name}"
            rows.append(
                {
                    "table": f"{table.schema}.{table.name}",
                    "rows_read": len(delta_sharing.load_as_pandas(url, limit=1000)),
                }
            )
        setup.wait_for_audit(self.home, RECIPIENT, "queryTable", len(rows))
        self._other_reader_reads()
        return pd.DataFrame(rows)

    def _other_reader_reads(self) -> None:
        """The head office reads the products table too (its requests are in the same audit table)."""
        import delta_sharing

        self.provider.sql(
            f"CREATE RECIPIENT IF NOT EXISTS {OTHER_READER} COMMENT 'Head office analysts'; "
            f"GRANT SELECT ON SHARE {SHARE} TO RECIPIENT {OTHER_READER}"
        )
        profile = setup.issue_profile(OTHER_READER, self.home, name="lab1_head_office")
        client = delta_sharing.SharingClient(str(profile))
        tables = client.list_all_tables()
        for table in tables[:2]:
            url = f"{profile}#{table.share}.{table.schema}.{table.name}"
            delta_sharing.load_as_pandas(url, limit=10)
        setup.wait_for_audit(self.home, OTHER_READER, "queryTable", min(2, len(tables)))

    # -- checks -------------------------------------------------------------------------------
    def _scalar(self, sql: str) -> Any:
        return self.provider.sql(sql).iloc[0, 0]

    def _check_p1(self, answer: Any) -> None:
        expect(
            isinstance(answer, tuple | list) and len(answer) == 2,
            "answer with a tuple (number of products, number of categories)",
        )
        frame = self.provider.sql(
            f"SELECT count(*) AS n, count(DISTINCT category) AS c FROM {PRODUCTS}"
        )
        n, c = int(frame.iloc[0, 0]), int(frame.iloc[0, 1])
        products_ok = is_whole_number(answer[0]) and int(answer[0]) == n
        categories_ok = is_whole_number(answer[1]) and int(answer[1]) == c
        credit = (products_ok + categories_ok) / 2  # each part is worth half the points
        if not products_ok:
            raise CheckFailed(
                f"{answer[0]!r} is not the number of products; count every row", credit=credit
            )
        if not categories_ok:
            raise CheckFailed(
                f"{answer[1]!r} is not the number of categories; count DISTINCT values",
                credit=credit,
            )

    def _check_p2(self, answer: Any) -> None:
        expect(isinstance(answer, str), f"answer with the region's name (a string), not {answer!r}")
        counts = self.provider.sql(f"SELECT region, count(*) AS n FROM {STORES} GROUP BY region")
        top = counts[counts["n"] == counts["n"].max()]["region"].str.lower().tolist()
        expect(
            answer.strip().lower() in top,
            f"'{answer}' is not the region with the most stores; "
            "group the stores by region and order by the count",
        )

    def _check_p3(self, _sql: Any) -> None:
        from helpers.exceptions import NotFoundError

        try:
            share = self.catalog.get_share(SHARE)
        except NotFoundError:
            raise CheckFailed(
                f"there is no share named {SHARE}; check the name in your statement"
            ) from None
        expect(
            bool((share.comment or "").strip()),
            f"the share {SHARE} exists but has no comment; give it one with COMMENT ON SHARE {SHARE} "
            f"IS '...' (or DROP SHARE {SHARE}, then CREATE SHARE {SHARE} COMMENT '...')",
        )

    def _check_p4(self, _sql: Any) -> None:
        expect(self._has_share(), f"create the share {SHARE} first (task p3)")
        wanted = {self.catalog.get_table(t).location for t in (PRODUCTS, INVENTORY)}
        own = {t.location for t in self.catalog.list_tables() if t.name.lower() == OWN_TABLE}
        shared = {t.location for t in self.catalog.shared_tables(SHARE)} - own  # task p8's table
        missing = len(wanted - shared)
        if missing:
            raise CheckFailed(
                f"{missing} of the two tables is not in the share yet; SHOW ALL IN SHARE {SHARE} "
                f"shows what is (ALTER SHARE {SHARE} ADD TABLE ... for each missing one)",
                credit=(2 - missing) / 2,
            )
        extra = len(shared - wanted)
        expect(
            extra == 0,
            f"the share holds {extra} table(s) more than asked; "
            f"ALTER SHARE {SHARE} REMOVE TABLE schema.table",
        )

    def _check_p5(self, _sql: Any) -> None:
        from helpers.exceptions import NotFoundError

        try:
            recipient = self.catalog.get_recipient(RECIPIENT)
        except NotFoundError:
            raise CheckFailed(f"there is no recipient named {RECIPIENT}; SHOW RECIPIENTS") from None
        expect(
            bool((recipient.comment or "").strip()),
            f"the recipient {RECIPIENT} exists but has no comment; give it one with COMMENT ON "
            f"RECIPIENT {RECIPIENT} IS '...' (DROP RECIPIENT would also drop its grants and tokens)",
        )

    def _require_grant(self) -> None:
        grants = (
            [g.recipient.lower() for g in self.catalog.grants_on_share(SHARE)]
            if self._has_share()
            else []
        )
        expect(RECIPIENT in grants, f"{RECIPIENT} has no grant on {SHARE} yet (task p6)")

    def _has_share(self) -> bool:
        return any(s.name.lower() == SHARE for s in self.catalog.list_shares())

    def _check_p6(self, _sql: Any) -> None:
        self._check_p5(None)
        expect(self._has_share(), f"create the share {SHARE} first (task p3)")
        self._require_grant()

    def _check_p7(self, answer: Any) -> None:
        expect(is_whole_number(answer), f"answer with a whole number, not {answer!r}")
        audit = self.catalog.audit_frame()
        n = int(
            (
                (audit["recipient"].str.lower() == RECIPIENT) & (audit["action"] == "queryTable")
            ).sum()
        )
        expect(n > 0, "the recipient has not read anything yet: run the recipient cell above first")
        expect(
            int(answer) == n,
            f"{answer} is not the number of queryTable requests by {RECIPIENT}; other recipients "
            "read the share too: filter on both the recipient and the action",
        )

    def _check_p8(self, _sql: Any) -> None:
        from deltalake import DeltaTable

        from helpers.exceptions import NotFoundError

        catalogs = {c.name.lower() for c in self.catalog.list_catalogs()}
        expect(
            OWN_CATALOG in catalogs,
            f"there is no catalog {OWN_CATALOG}; CREATE CATALOG IF NOT EXISTS {OWN_CATALOG} (SHOW "
            "CATALOGS lists them)",
        )
        try:
            info = self.catalog.get_table(OWN_TABLE)
        except NotFoundError:
            raise CheckFailed(
                f"there is no table {OWN_TABLE}; USE CATALOG {OWN_CATALOG}, CREATE SCHEMA IF NOT "
                f"EXISTS {OWN_SCHEMA}, then CREATE TABLE (SHOW TABLES IN {OWN_CATALOG}.{OWN_SCHEMA})"
            ) from None
        table = DeltaTable(info.location)
        data = table.to_pyarrow_table()
        types = {f.name: str(f.type) for f in data.schema}
        shape_ok = (
            {k: types.get(k) for k in OWN_COLUMNS} == OWN_COLUMNS
            and self.catalog.is_managed(OWN_TABLE)
            and bool((table.metadata().description or "").strip())
        )
        rows = data.to_pandas()
        stores = set(self.provider.sql(f"SELECT store_id FROM {STORES}")["store_id"])
        products = set(self.provider.sql(f"SELECT product_id FROM {PRODUCTS}")["product_id"])
        rows_ok = (
            shape_ok
            and len(rows) >= 3
            and not rows.duplicated(["store_id", "product_id"]).any()
            and bool(
                rows["store_id"].isin(stores).all() and rows["product_id"].isin(products).all()
            )
            and bool((rows["quantity"] > 0).all())
        )
        shared_ok = info.location in {t.location for t in self.catalog.shared_tables(SHARE)}
        notes = []
        if not shape_ok:
            notes.append(
                f"{OWN_TABLE} must be a managed table (CREATE TABLE without LOCATION) with the INT "
                "columns store_id, product_id, quantity and a COMMENT (DESCRIBE TABLE shows it; "
                "CREATE OR REPLACE TABLE fixes it)"
            )
        elif not rows_ok:
            notes.append(
                f"{OWN_TABLE} needs at least 3 rows, each an existing store_id and product_id (once "
                "per pair) with a quantity above 0 (a re-run INSERT adds the rows again: CREATE OR "
                "REPLACE TABLE first)"
            )
        if not shared_ok:
            notes.append(f"{OWN_TABLE} is not in the share yet: ALTER SHARE {SHARE} ADD TABLE ...")
        if notes:
            raise CheckFailed("; ".join(notes), credit=(shape_ok + rows_ok + shared_ok) / 3)


def prepare(home: str | os.PathLike[str] | None = None) -> ProviderLab:
    """Generate the retail dataset if missing, start the server, and return the lab's tasks."""
    setup.ensure_dataset("retail", home)
    setup.ensure_server(home)
    return ProviderLab(home)
