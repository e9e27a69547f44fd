"""Lab 2, recipient: mount a share and answer questions with queries.

Every expected answer is computed at check time from the data the profile gives access to, through the
open protocol only (the official ``delta_sharing`` client), so the checks work against any Delta Sharing
server and can never go stale.
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import cached_property
from typing import Any

import pandas as pd

from helpers.labs.core import CheckFailed, Task, check_all, expect, is_number, is_whole_number

LAB = "recipient"


class RecipientLab:
    """Tasks ``r1`` … ``r6`` for the holder of ``profile_path`` (the sales team's profile)."""

    def __init__(self, profile_path: str) -> None:
        self.profile_path = str(profile_path)
        self.r1 = Task(
            LAB,
            "r1",
            "How many tables does your profile give you access to?",
            self._check_r1,
            hints=(
                "The client lists everything a profile can see: SharingClient(profile).",
                "len(delta_sharing.SharingClient(profile_path).list_all_tables())",
            ),
        )
        self.r2 = Task(
            LAB,
            "r2",
            "Mount every shared table into DuckDB as share.schema.table",
            self._check_r2,
            hints=(
                "helpers.recipient.mount(profile_path) returns a DuckDB connection.",
                "con = mount(profile_path); con.sql('SHOW ALL TABLES')",
            ),
        )
        self.r3 = Task(
            LAB,
            "r3",
            "Total revenue (sum of total_price) of COMPLETED bookings",
            self._check_r3,
            hints=(
                "The bookings table is in the sales share's sales_domain schema.",
                "SELECT sum(total_price) FROM sales_data_share.sales_domain.bookings "
                "WHERE booking_status = 'COMPLETED'",
            ),
        )
        self.r4 = Task(
            LAB,
            "r4",
            "The busiest route: the (origin, destination) pair with the most flights",
            self._check_r4,
            hints=(
                "Group the core share's flights by origin_airport and destination_airport.",
                "ORDER BY count(*) DESC LIMIT 1; answer as a tuple ('AAA', 'BBB')",
            ),
        )
        self.r5 = Task(
            LAB,
            "r5",
            "How many bookings sit on CANCELLED flights?",
            self._check_r5,
            hints=(
                "Join bookings (sales share) with flights (core share) on flight_id.",
                "... JOIN airline_core_share.shared_airline.flights f USING (flight_id) "
                "WHERE f.status = 'CANCELLED'",
            ),
        )
        self.r6 = Task(
            LAB,
            "r6",
            "Which schemas (domains) does your profile let you read? (their names, any order)",
            self._check_r6,
            hints=(
                "Every table the client lists has a schema; the provider decides what each recipient "
                "sees, so count nothing you have not been given.",
                "sorted({t.schema for t in client.list_all_tables()})",
            ),
        )

    def check_all(self) -> None:
        """Check every task again and print the points."""
        check_all(self)

    # -- data, read once through the protocol -------------------------------------------------
    def _url(self, share: str, schema: str, table: str) -> str:
        return f"{self.profile_path}#{share}.{schema}.{table}"

    @cached_property
    def _tables(self) -> list[Any]:
        import delta_sharing

        return delta_sharing.SharingClient(self.profile_path).list_all_tables()

    @cached_property
    def _bookings(self) -> pd.DataFrame:
        import delta_sharing

        return delta_sharing.load_as_pandas(
            self._url("sales_data_share", "sales_domain", "bookings")
        )

    @cached_property
    def _flights(self) -> pd.DataFrame:
        import delta_sharing

        return delta_sharing.load_as_pandas(
            self._url("airline_core_share", "shared_airline", "flights")
        )

    # -- checks ------------------------------------------------------------------------------
    def _check_r1(self, answer: Any) -> None:
        expect(is_whole_number(answer), f"answer with a whole number of tables, not {answer!r}")
        n = len(self._tables)
        expect(
            int(answer) == n,
            f"{answer} is not the number of tables your profile lists; "
            "did you count every share, not just one schema?",
        )

    def _check_r2(self, con: Any) -> None:
        expect(hasattr(con, "sql"), "answer with the DuckDB connection that mount() returned")
        for t in self._tables:
            name = f'"{t.share}"."{t.schema}"."{t.name}"'
            try:
                con.sql(f"SELECT 1 FROM {name} LIMIT 0")
            except Exception as exc:  # noqa: BLE001 - DuckDB raises several types
                raise CheckFailed(f"{t.share}.{t.schema}.{t.name} is not mounted: {exc}") from None
        flights = con.execute(
            'SELECT count(*) FROM "airline_core_share"."shared_airline"."flights"'
        ).fetchall()[0][0]
        expect(
            flights == len(self._flights),
            "the mounted flights table does not hold the shared rows; mount again from the profile",
        )

    def _check_r3(self, answer: Any) -> None:
        expect(is_number(answer), f"answer with a number, not {answer!r}")
        b = self._bookings
        expected = sum(
            Decimal(str(v)) for v in b.loc[b["booking_status"] == "COMPLETED", "total_price"]
        )
        expect(
            math.isclose(float(answer), float(expected), rel_tol=1e-9, abs_tol=0.005),
            "not the sum of total_price over COMPLETED bookings; check the status filter "
            "(CANCELLED and NO_SHOW bookings do not count)",
        )

    def _check_r4(self, answer: Any) -> None:
        expect(
            isinstance(answer, tuple | list) and len(answer) == 2,
            "answer with a tuple (origin_airport, destination_airport)",
        )
        counts = self._flights.groupby(["origin_airport", "destination_airport"]).size()
        top = counts.max()
        busiest = {pair for pair, n in counts.items() if n == top}
        expect(
            tuple(str(x).upper() for x in answer) in busiest,
            f"{tuple(answer)} is not the busiest route; count flights per (origin, destination) pair "
            "and take the largest",
        )

    def _check_r5(self, answer: Any) -> None:
        expect(is_whole_number(answer), f"answer with a whole number of bookings, not {answer!r}")
        cancelled = set(self._flights.loc[self._flights["status"] == "CANCELLED", "flight_id"])
        n = int(self._bookings["flight_id"].isin(cancelled).sum())
        expect(
            int(answer) == n,
            "not the number of bookings on CANCELLED flights; join on flight_id "
            "and filter on the flight's status, not the booking's",
        )

    def _check_r6(self, answer: Any) -> None:
        if isinstance(answer, str):
            answer = [answer]
        expect(
            isinstance(answer, list | tuple | set | frozenset)
            and all(isinstance(v, str) for v in answer),
            f"answer with the schemas' names (a list of strings), not {answer!r}",
        )
        visible = {t.schema.lower() for t in self._tables}
        given = {str(v).strip().lower() for v in answer}
        expect(
            given == visible,
            f"{len(given)} schema name(s) given, and the set is not the one your profile lists; "
            "look again at what your profile lists: the provider decides what each recipient sees",
        )
