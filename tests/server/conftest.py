"""Fixtures of the server conformance suite.

One session-scoped *sharing lab* is built once: tiny Delta tables written with deltalake (a partitioned
table with several files and stats, a CDF table with insert/update/delete/merge commits, an unpartitioned
table without history), registered in a catalog, shared to recipients with tokens and profile files, and
served by the real ``sharelab serve`` subprocess on a free loopback port. Tests that change the catalog
(new recipients, revoked tokens, extra tables) create their own uniquely named objects, so tests stay
independent while the expensive setup happens once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests
from deltalake import DeltaTable, write_deltalake

# the shared test helpers (tests/support.py): one session server for the whole suite
from tests.support import start_server, stop_server

PREFIX = "/delta-sharing"
UTC = dt.UTC


# --------------------------------------------------------------------------------------------------
# Tiny Delta tables
# --------------------------------------------------------------------------------------------------

BASE_TS = dt.datetime(2024, 1, 1, tzinfo=UTC)
TS_TYPE = pa.timestamp("us", tz="UTC")
SALES_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("region", pa.string()),
        ("amount", pa.float64()),
        ("name", pa.string()),
        ("ts", TS_TYPE),
        ("day", pa.date32()),
    ]
)


def _sales_rows(
    ids: list[int], regions: list[str | None], amounts: list[float], names: list[str | None]
) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "region": pa.array(regions, pa.string()),
            "amount": pa.array(amounts, pa.float64()),
            "name": pa.array(names, pa.string()),
            "ts": pa.array([BASE_TS + dt.timedelta(hours=i) for i in ids], TS_TYPE),
            "day": pa.array([(BASE_TS + dt.timedelta(days=i)).date() for i in ids], pa.date32()),
        },
        schema=SALES_SCHEMA,
    )


def _pause() -> None:
    """Keep commit timestamps (milliseconds) of consecutive commits distinct."""
    time.sleep(0.02)


def build_sales_table(path: Path) -> None:
    """Partitioned by ``region``; 4 versions, 9 files, data ranges chosen so hints prune predictably.

    - v0: ids 0-29, regions emea/amer/apac, amount = id (0..29)              -> 3 files
    - v1: ids 30-41, regions emea/amer/apac/NULL, amount 100..111, some NULL names -> 4 files
    - v2: ids 42-43, apac, amount 7.0 twice (min = max = 7, no nulls)          -> 1 file
    - v3: ids 44-45, emea, amounts 5 and 200 (a wide range)                    -> 1 file
    """
    regions3 = ["emea", "amer", "apac"]
    ids = list(range(30))
    write_deltalake(
        str(path),
        _sales_rows(
            ids, [regions3[i % 3] for i in ids], [float(i) for i in ids], [f"n{i}" for i in ids]
        ),
        partition_by=["region"],
    )
    _pause()
    ids = list(range(30, 42))
    regions4: list[str | None] = ["emea", "amer", "apac", None]
    write_deltalake(
        str(path),
        _sales_rows(
            ids,
            [regions4[i % 4] for i in ids],
            [100.0 + i - 30 for i in ids],
            # NULL names only in the amer and NULL-region files (ids with i % 4 in {1, 3})
            [None if i % 4 in (1, 3) else f"n{i}" for i in ids],
        ),
        mode="append",
    )
    _pause()
    write_deltalake(
        str(path), _sales_rows([42, 43], ["apac", "apac"], [7.0, 7.0], ["c", "c"]), mode="append"
    )
    _pause()
    write_deltalake(
        str(path), _sales_rows([44, 45], ["emea", "emea"], [5.0, 200.0], ["m", "m"]), mode="append"
    )


EVENTS_SCHEMA = pa.schema(
    [("id", pa.int64()), ("region", pa.string()), ("v", pa.string()), ("ts", TS_TYPE)]
)


def _events_rows(ids: list[int], regions: list[str], vs: list[str]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "region": pa.array(regions, pa.string()),
            "v": pa.array(vs, pa.string()),
            "ts": pa.array([BASE_TS + dt.timedelta(minutes=i) for i in ids], TS_TYPE),
        },
        schema=EVENTS_SCHEMA,
    )


def build_events_table(path: Path) -> None:
    """CDF-enabled, partitioned by ``region``: v0 create, v1 append, v2 update, v3 delete, v4 merge.

    deltalake writes ``cdc`` files (``_change_data/``) for the update, delete and merge commits.
    """
    write_deltalake(
        str(path),
        _events_rows([1, 2, 3, 4], ["emea", "amer", "emea", "amer"], ["a", "b", "c", "d"]),
        partition_by=["region"],
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    _pause()
    write_deltalake(str(path), _events_rows([5, 6], ["emea", "amer"], ["e", "f"]), mode="append")
    _pause()
    DeltaTable(str(path)).update(predicate="id = 1 OR id = 2", updates={"v": "'u'"})
    _pause()
    DeltaTable(str(path)).delete("id = 3")
    _pause()
    (
        DeltaTable(str(path))
        .merge(
            _events_rows([4, 7], ["amer", "emea"], ["m", "g"]),
            "t.id = s.id",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


def build_plain_table(path: Path, rows: int = 10) -> None:
    """Unpartitioned, one commit, no CDF."""
    write_deltalake(
        str(path),
        pa.table(
            {
                "k": pa.array(range(rows), pa.int64()),
                "label": pa.array([f"row{i}" for i in range(rows)], pa.string()),
                "ts": pa.array([BASE_TS + dt.timedelta(seconds=i) for i in range(rows)], TS_TYPE),
            }
        ),
    )


def build_ntz_table(path: Path) -> None:
    """Naive timestamps: deltalake writes ``timestamp_ntz``, reader feature ``timestampNtz`` (reader v3)."""
    write_deltalake(
        str(path),
        pa.table(
            {
                "id": pa.array([1, 2, 3], pa.int64()),
                "local_time": pa.array(
                    [dt.datetime(2024, 1, 1, 8, 30) + dt.timedelta(hours=i) for i in range(3)],
                    pa.timestamp("us"),
                ),
            }
        ),
    )


def commit_timestamps(path: Path) -> dict[int, int]:
    """``commitInfo.timestamp`` (epoch ms) of every version, read from the Delta log."""
    out: dict[int, int] = {}
    for entry in DeltaTable(str(path)).history():
        out[int(entry["version"])] = int(entry["timestamp"])
    return out


def iso_ms(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and ``Z`` (the protocol's timestamp format)."""
    stamp = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------------
# The lab: catalog, shares, recipients, server
# --------------------------------------------------------------------------------------------------


@dataclass
class Response:
    """A parsed NDJSON protocol response."""

    status: int
    headers: requests.structures.CaseInsensitiveDict
    lines: list[dict[str, Any]]
    text: str

    def of(self, key: str) -> list[dict[str, Any]]:
        """The payloads of every line whose single key is ``key``."""
        return [line[key] for line in self.lines if key in line]

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.of("file")

    @property
    def version(self) -> int:
        return int(self.headers["Delta-Table-Version"])


@dataclass
class SharingLab:
    """Everything the conformance tests need to talk to the running server."""

    home: Path
    catalog: Any
    server: Any
    tables: dict[str, Path]
    tokens: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, Path] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)

    # -- addressing --------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"{self.server.url}{PREFIX}"

    @property
    def endpoint(self) -> str:
        return self.base + "/"

    def url(self, recipient: str, share: str, schema: str, table: str) -> str:
        """The official client's table URL ``<profile>#<share>.<schema>.<table>``."""
        return f"{self.profiles[recipient]}#{share}.{schema}.{table}"

    def table_path(self, share: str, schema: str, table: str) -> str:
        return f"{self.base}/shares/{share}/schemas/{schema}/tables/{table}"

    # -- raw HTTP ----------------------------------------------------------------------------------
    def auth(self, recipient: str | None = None, token: str | None = None) -> dict[str, str]:
        token = token if token is not None else self.tokens[recipient or "alice"]
        return {"Authorization": f"Bearer {token}"}

    def get(
        self,
        path: str,
        recipient: str | None = "alice",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        hdrs = self.auth(recipient, token) if (recipient or token) else {}
        hdrs.update(headers or {})
        url = path if path.startswith("http") else self.base + path
        return self.session.get(url, headers=hdrs, timeout=30, **kwargs)

    def post(
        self,
        path: str,
        body: Any = None,
        recipient: str | None = "alice",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: str | bytes | None = None,
    ) -> requests.Response:
        hdrs = self.auth(recipient, token) if (recipient or token) else {}
        hdrs.update(headers or {})
        url = path if path.startswith("http") else self.base + path
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
            return self.session.post(url, data=data, headers=hdrs, timeout=30)
        return self.session.post(url, json={} if body is None else body, headers=hdrs, timeout=30)

    @staticmethod
    def parse(resp: requests.Response) -> Response:
        text = resp.text
        lines = [json.loads(line) for line in text.splitlines() if line.strip()] if resp.ok else []
        return Response(resp.status_code, resp.headers, lines, text)

    def query(
        self,
        share: str,
        schema: str,
        table: str,
        body: dict[str, Any] | None = None,
        recipient: str = "alice",
        capabilities: str | None = None,
    ) -> Response:
        headers = {"delta-sharing-capabilities": capabilities} if capabilities else {}
        resp = self.post(
            f"/shares/{share}/schemas/{schema}/tables/{table}/query",
            body or {},
            recipient=recipient,
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
        return self.parse(resp)

    def changes(
        self,
        share: str,
        schema: str,
        table: str,
        params: str,
        recipient: str = "alice",
        capabilities: str | None = None,
    ) -> Response:
        headers = {"delta-sharing-capabilities": capabilities} if capabilities else {}
        resp = self.get(
            f"/shares/{share}/schemas/{schema}/tables/{table}/changes?{params}",
            recipient=recipient,
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
        return self.parse(resp)

    # -- provisioning ------------------------------------------------------------------------------
    def add_recipient(
        self,
        name: str,
        properties: dict[str, str] | None = None,
        shares: tuple[str, ...] = (),
        lifetime_seconds: int | None = None,
    ) -> str:
        """Create a recipient, grant it ``shares``, issue a token and write its profile; return the token."""
        self.catalog.create_recipient(
            name, comment=f"test recipient {name}", properties=properties or {}
        )
        for share in shares:
            self.catalog.grant(share, name)
        issued = self.catalog.issue_token(name, lifetime_seconds=lifetime_seconds)
        self.tokens[name] = issued.token
        self.profiles[name] = write_test_profile(self.home, name, self.endpoint, issued)
        return issued.token

    def share_table(
        self, location: Path, *, history: bool = True, start_version: int | None = None
    ) -> tuple[str, str]:
        """Register ``location``, share it alone as ``s.t`` in a new share granted to a new recipient.

        :returns: (share name, recipient name); the recipient's profile and token are in the lab.
        """
        name = self.unique("t")
        self.catalog.register_table(f"lab.extra.{name}", str(location))
        self.catalog.create_share(name)
        self.catalog.add_table_to_share(
            name, f"lab.extra.{name}", alias="s.t", history=history, start_version=start_version
        )
        self.add_recipient(name, shares=(name,))
        return name, name

    def unique(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write_test_profile(home: Path, recipient: str, endpoint: str, issued: Any) -> Path:
    """Write the recipient's version-1 profile file (mode 0600) with the catalog's own helpers."""
    from helpers.profiles import profile_dict, write_profile

    return write_profile(home / "profiles" / f"{recipient}.share", profile_dict(endpoint, issued))


def build_lab(home: Path, catalog: Any) -> dict[str, Path]:
    """Write the tables, register them and create the shares every test module uses."""
    from helpers.catalog import PartitionClause

    data = home / "data" / "test" / "retail"
    tables = {
        "sales": data / "sales",
        "events": data / "events",
        "plain": data / "plain",
        "ntz": data / "ntz",
    }
    build_sales_table(tables["sales"])
    build_events_table(tables["events"])
    build_plain_table(tables["plain"])
    build_ntz_table(tables["ntz"])
    for name, path in tables.items():
        catalog.register_table(f"lab.retail.{name}", str(path))

    catalog.create_share("retail_share", comment="the main test share")
    catalog.add_table_to_share("retail_share", "lab.retail.sales", alias="core.sales", history=True)
    catalog.add_table_to_share(
        "retail_share", "lab.retail.events", alias="core.events", history=True
    )
    catalog.add_table_to_share(
        "retail_share", "lab.retail.plain", alias="other.plain", history=False
    )

    region = (PartitionClause("region", "region", True),)
    catalog.create_share("regional_share", comment="partition filter by recipient property")
    catalog.add_table_to_share(
        "regional_share", "lab.retail.sales", alias="regional.sales", history=True, partition=region
    )
    catalog.add_table_to_share(
        "regional_share",
        "lab.retail.events",
        alias="regional.events",
        history=True,
        partition=region,
    )

    catalog.create_share("extra_share")
    catalog.add_table_to_share("extra_share", "lab.retail.plain", alias="misc.plain", history=True)
    catalog.add_table_to_share("extra_share", "lab.retail.ntz", alias="misc.ntz")

    catalog.create_share("hidden_share", comment="never granted to alice")
    catalog.add_table_to_share("hidden_share", "lab.retail.plain", alias="secret.plain")
    return tables


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharingLab]:
    """The shared sharing lab: tables, catalog, recipients alice (emea) and bob (amer), running server."""
    from helpers.catalog import Catalog

    home = tmp_path_factory.mktemp("sharing-lab")
    catalog = Catalog(home / "catalog.db")
    tables = build_lab(home, catalog)
    server = start_server(home)
    lab = SharingLab(home=home, catalog=catalog, server=server, tables=tables)
    lab.add_recipient(
        "alice", {"region": "emea"}, ("retail_share", "regional_share", "extra_share")
    )
    lab.add_recipient("bob", {"region": "amer"}, ("regional_share", "hidden_share"))
    try:
        yield lab
    finally:
        lab.session.close()
        stop_server(server)


@pytest.fixture(scope="session")
def sales_ts(lab: SharingLab) -> dict[int, int]:
    """Commit timestamps (epoch ms) of the sales table's versions."""
    return commit_timestamps(lab.tables["sales"])


@pytest.fixture(scope="session")
def events_ts(lab: SharingLab) -> dict[int, int]:
    """Commit timestamps (epoch ms) of the events table's versions."""
    return commit_timestamps(lab.tables["events"])
