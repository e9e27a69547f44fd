"""A small private sharing lab for the hardening tests: its own tables, catalog and server process.

The hardening tests change the server's limits (environment variables), kill it, or flood it with failed
authentications; so they never share the session server of :mod:`tests.server.conftest`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.server.conftest import (
    PREFIX,
    build_events_table,
    build_plain_table,
    build_sales_table,
    write_test_profile,
)
from tests.support import RunningServer, start_server, stop_server

__all__ = ["MiniLab", "build_minilab", "running_minilab"]


@dataclass
class MiniLab:
    """The tables, catalog, tokens and profiles of a private lab; ``server`` once started."""

    home: Path
    catalog: Any
    tables: dict[str, Path]
    tokens: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, Path] = field(default_factory=dict)
    server: RunningServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"{self.server.url}{PREFIX}"

    def auth(self, recipient: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[recipient]}"}

    def url(self, recipient: str, share: str, schema: str, table: str) -> str:
        return f"{self.profiles[recipient]}#{share}.{schema}.{table}"

    def add_recipient(
        self, name: str, shares: tuple[str, ...], properties: dict[str, str] | None = None
    ) -> str:
        self.catalog.create_recipient(name, properties=properties or {})
        for share in shares:
            self.catalog.grant(share, name)
        issued = self.catalog.issue_token(name)
        self.tokens[name] = issued.token
        endpoint = (
            f"{self.base}/" if self.server is not None else "http://127.0.0.1:1/delta-sharing/"
        )
        self.profiles[name] = write_test_profile(self.home, name, endpoint, issued)
        return issued.token

    def rewrite_profiles(self) -> None:
        """Point every profile at the running server (tokens unchanged)."""
        import json

        for path in self.profiles.values():
            data = json.loads(path.read_text())
            data["endpoint"] = f"{self.base}/"
            path.write_text(json.dumps(data))

    def query(
        self, path: str, body: dict[str, Any] | None = None, recipient: str = "alice", **kw: Any
    ) -> requests.Response:
        return requests.post(
            f"{self.base}{path}/query",
            json=body or {},
            headers=self.auth(recipient),
            timeout=30,
            **kw,
        )


def build_minilab(home: Path) -> MiniLab:
    """Tables ``sales`` (partitioned by region, 4 versions), ``events`` (CDF) and ``plain``, two shares,
    recipients ``alice`` (region emea: both shares) and ``bob`` (region amer: the regional share)."""
    from helpers.catalog import Catalog, PartitionClause

    home.mkdir(parents=True, exist_ok=True)
    data = home / "data"
    tables = {"sales": data / "sales", "events": data / "events", "plain": data / "plain"}
    build_sales_table(tables["sales"])
    build_events_table(tables["events"])
    build_plain_table(tables["plain"])
    catalog = Catalog(home / "catalog.db")
    for name, path in tables.items():
        catalog.register_table(f"lab.retail.{name}", str(path))
    catalog.create_share("retail")
    catalog.add_table_to_share("retail", "lab.retail.sales", alias="core.sales", history=True)
    catalog.add_table_to_share("retail", "lab.retail.events", alias="core.events", history=True)
    catalog.add_table_to_share("retail", "lab.retail.plain", alias="other.plain")
    catalog.create_share("regional")
    catalog.add_table_to_share(
        "regional",
        "lab.retail.sales",
        alias="regional.sales",
        history=True,
        partition=(PartitionClause("region", "region", True),),
    )
    lab = MiniLab(home=home, catalog=catalog, tables=tables)
    lab.add_recipient("alice", ("retail", "regional"), {"region": "emea"})
    lab.add_recipient("bob", ("regional",), {"region": "amer"})
    return lab


@contextmanager
def running_minilab(
    home: Path,
    env: dict[str, str] | None = None,
    prepare: Callable[[MiniLab], None] | None = None,
) -> Iterator[MiniLab]:
    """:func:`build_minilab` (then ``prepare(lab)``) with its server running (stopped at the end)."""
    lab = build_minilab(home)
    if prepare is not None:
        prepare(lab)
    lab.server = start_server(home, env=env)
    lab.rewrite_profiles()
    try:
        yield lab
    finally:
        stop_server(lab.server)
        lab.catalog.close()
