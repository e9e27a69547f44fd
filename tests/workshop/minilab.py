"""A tiny instructor lab home for the workshop tests: one partitioned Delta table with its change data feed.

``demo.s.t`` (100 rows, ``part`` a/b, ``v`` = 0..99, so ``sum(v) = 4950``) shared WITH HISTORY as
``demo_share.s.t``, built in well under a second (the generators are not needed to test TLS and the board).
"""

from __future__ import annotations

from pathlib import Path

TABLE = "demo_share.s.t"
ROWS = 100
SUM_V = float(sum(range(ROWS)))


def build(home: Path) -> None:
    """Write the table and the share into ``home`` (a fresh lab home)."""
    import pandas as pd
    from deltalake import write_deltalake

    from helpers.catalog import open_catalog

    location = home / "data" / "demo" / "s" / "t"
    df = pd.DataFrame(
        {"id": range(ROWS), "part": ["a", "b"] * (ROWS // 2), "v": [float(i) for i in range(ROWS)]}
    )
    write_deltalake(
        str(location),
        df,
        partition_by=["part"],
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    catalog = open_catalog(home)
    catalog.register_table("demo.s.t", str(location))
    catalog.create_share("demo_share")
    catalog.add_table_to_share("demo_share", "demo.s.t", alias="s.t", history=True)


def add_attendees(home: Path, names: list[str]) -> dict[str, str]:
    """Recipients granted ``demo_share``; returns name -> activation code."""
    from helpers.catalog import open_catalog

    catalog = open_catalog(home)
    codes = {}
    for name in names:
        catalog.create_recipient(name, if_not_exists=True)
        catalog.grant("demo_share", name)
        codes[name] = catalog.create_activation(name)
    return codes


def recipient_token(home: Path, name: str) -> str:
    """A recipient ``name`` granted ``demo_share``; returns a bearer token of it."""
    from helpers.catalog import open_catalog

    catalog = open_catalog(home)
    catalog.create_recipient(name)
    catalog.grant("demo_share", name)
    return catalog.issue_token(name).token
