"""Shared views (row filters, column masks) and IP access lists, through the official client on a real server.

One module-scoped lab: a Delta table of customers, a view filtering rows by ``current_recipient('region')``
and masking e-mails unless ``current_recipient('tier') = 'gold'``, shared to recipients with different
properties, served by ``sharelab serve`` on a free loopback port. IP access lists are tested from two
loopback addresses: 127.0.0.1 (the official client) and 127.0.0.2 (``requests`` with the client socket bound
to that source address).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import delta_sharing
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from deltalake import DeltaTable, write_deltalake
from requests.adapters import HTTPAdapter

from helpers.catalog import open_catalog
from helpers.catalog.views import view_store
from helpers.profiles import profile_dict, write_profile
from helpers.provider import Provider
from tests.support import RunningServer, start_server, stop_server

VIEW = "retail.crm.partner_customers"
SHARE = "partners"
ALIAS = "crm.customers"
OTHER_HOST = "127.0.0.2"
REGIONS = ["EU", "US", "APAC", "EU"]


def _customers(ids: range) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(list(ids), pa.int64()),
            "region": [REGIONS[i % 4] for i in ids],
            "email": [f"c{i}@example.test" for i in ids],
            "spend": pa.array([float(i * 10) for i in ids], pa.float64()),
        }
    )


def bound_session(source: str) -> requests.Session:
    """A requests session whose sockets connect from ``source`` (another loopback address)."""

    class _SourceAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["source_address"] = (source, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("http://", _SourceAdapter())
    return session


@dataclass
class ViewLab:
    home: Path
    server: RunningServer
    provider: Provider
    profiles: dict[str, Path]

    def profile(self, name: str) -> dict[str, Any]:
        return json.loads(self.profiles[name].read_text())

    def url(self, recipient: str, table: str = ALIAS) -> str:
        return f"{self.profiles[recipient]}#{SHARE}.{table}"

    def add_recipient(self, name: str, props: str) -> None:
        self.provider.sql(
            f"CREATE RECIPIENT {name} PROPERTIES ({props}); "
            f"GRANT SELECT ON SHARE {SHARE} TO RECIPIENT {name}"
        )
        issued = self.provider.catalog.issue_token(name)
        path = self.home / "profiles" / f"{name}.share"
        write_profile(path, profile_dict(self.server.endpoint, issued))
        self.profiles[name] = path

    def api(
        self,
        recipient: str,
        method: str,
        path: str,
        session: requests.Session | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        prof = self.profile(recipient)
        headers = {"Authorization": f"Bearer {prof['bearerToken']}", **kwargs.pop("headers", {})}
        return (session or requests).request(
            method, prof["endpoint"].rstrip("/") + path, headers=headers, timeout=30, **kwargs
        )

    def state_file(self, recipient: str) -> Path:
        view_id = view_store(self.provider.catalog).get_view(VIEW).id
        rid = self.provider.catalog.get_recipient(recipient).id
        return self.home / "views" / view_id / rid / "state.json"


@pytest.fixture(scope="module")
def vlab(tmp_path_factory: pytest.TempPathFactory, catalog_backend: str) -> Iterator[ViewLab]:
    root = tmp_path_factory.mktemp("views")
    table = root / "customers"
    write_deltalake(
        str(table), _customers(range(0, 20)), configuration={"delta.enableChangeDataFeed": "true"}
    )
    write_deltalake(str(table), _customers(range(20, 40)), mode="append")
    home = root / "home"
    provider = Provider(home)
    provider.sql(
        f"CREATE TABLE retail.crm.customers LOCATION '{table}';"
        f"CREATE VIEW {VIEW} COMMENT 'partners see their region; gold sees e-mails' AS "
        "SELECT id, region, CASE WHEN current_recipient('tier') = 'gold' THEN email ELSE '***' END "
        "AS email, spend FROM retail.crm.customers WHERE region = current_recipient('region');"
        f"CREATE SHARE {SHARE}; ALTER SHARE {SHARE} ADD VIEW {VIEW} AS {ALIAS};"
        f"ALTER SHARE {SHARE} ADD TABLE retail.crm.customers AS raw.customers WITH HISTORY"
    )
    server = start_server(home)
    lab = ViewLab(home, server, provider, {})
    lab.add_recipient("eu_gold", "'region' = 'EU', 'tier' = 'gold'")
    lab.add_recipient("us_silver", "'region' = 'US', 'tier' = 'silver'")
    try:
        yield lab
    finally:
        stop_server(server)


def _source(lab: ViewLab) -> pd.DataFrame:
    location = lab.provider.catalog.get_table("retail.crm.customers").location
    return DeltaTable(location).to_pandas()


def _expected(lab: ViewLab, region: str, gold: bool) -> pd.DataFrame:
    src = _source(lab)
    rows = src[src.region == region].copy()
    if not gold:
        rows["email"] = "***"
    return rows[["id", "region", "email", "spend"]].sort_values("id", ignore_index=True)


def _read(lab: ViewLab, recipient: str, fmt: bool | None = None) -> pd.DataFrame:
    df = delta_sharing.load_as_pandas(lab.url(recipient), use_delta_format=fmt)
    return df.sort_values("id", ignore_index=True)


def _version(lab: ViewLab, recipient: str) -> int:
    return int(delta_sharing.get_table_version(lab.url(recipient)))


# ------------------------------------------------------------------------------------ row filters, masks
@pytest.mark.parametrize("fmt", [None, False, True])
def test_each_recipient_gets_its_rows_and_mask(vlab: ViewLab, fmt: bool | None) -> None:
    eu = _read(vlab, "eu_gold", fmt)
    us = _read(vlab, "us_silver", fmt)
    pd.testing.assert_frame_equal(eu, _expected(vlab, "EU", gold=True), check_dtype=False)
    pd.testing.assert_frame_equal(us, _expected(vlab, "US", gold=False), check_dtype=False)
    assert set(eu.region) == {"EU"} and set(us.region) == {"US"}
    assert set(us.email) == {"***"} and all(e.endswith("@example.test") for e in eu.email)
    assert not set(eu.id) & set(us.id)


def test_limit_and_metadata_are_per_recipient(vlab: ViewLab) -> None:
    eu = delta_sharing.load_as_pandas(vlab.url("eu_gold"), limit=3)
    assert len(eu) == 3 and set(eu.region) == {"EU"}
    meta = delta_sharing.get_table_metadata(vlab.url("us_silver"))
    fields = [f["name"] for f in json.loads(meta.schema_string)["fields"]]
    assert fields == ["id", "region", "email", "spend"]
    assert meta.configuration == {}  # no change data feed on a view
    ids = {delta_sharing.get_table_metadata(vlab.url(r)).id for r in ("eu_gold", "us_silver")}
    assert len(ids) == 2  # one Delta table per recipient


def test_listings_show_the_view(vlab: ViewLab) -> None:
    for recipient in ("eu_gold", "us_silver"):
        client = delta_sharing.SharingClient(vlab.profiles[recipient])
        names = sorted(f"{t.schema}.{t.name}" for t in client.list_all_tables())
        assert names == ["crm.customers", "raw.customers"]
        share = next(s for s in client.list_shares() if s.name == SHARE)
        assert sorted(s.name for s in client.list_schemas(share)) == ["crm", "raw"]
        crm = next(s for s in client.list_schemas(share) if s.name == "crm")
        assert [t.name for t in client.list_tables(crm)] == ["customers"]


def _files(
    lab: ViewLab, recipient: str, body: dict[str, Any]
) -> tuple[list[dict[str, Any]], str | None]:
    resp = lab.api(
        recipient,
        "POST",
        f"/shares/{SHARE}/schemas/crm/tables/customers/query",
        json=body,
        headers={"delta-sharing-capabilities": "includeendstreamaction=true"},
    )
    assert resp.status_code == 200, resp.text
    lines = [json.loads(line) for line in resp.text.splitlines()]
    files = [line["file"] for line in lines if "file" in line]
    end = [line["endStreamAction"] for line in lines if "endStreamAction" in line]
    return files, (end[0].get("nextPageToken") if end else None)


def _download(url: str, session: requests.Session | None = None) -> pd.DataFrame:
    resp = (session or requests).get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    return pq.read_table(io.BytesIO(resp.content)).to_pandas()


def test_pages_and_downloaded_files_hold_only_own_rows(vlab: ViewLab) -> None:
    for recipient, region in (("eu_gold", "EU"), ("us_silver", "US")):
        frames, token, pages = [], None, 0
        while True:
            body: dict[str, Any] = {"maxFiles": 1}
            if token:
                body["pageToken"] = token
            files, token = _files(vlab, recipient, body)
            pages += 1
            frames += [_download(f["url"]) for f in files]
            if not token:
                break
        got = pd.concat(frames).sort_values("id", ignore_index=True)
        expected = _expected(vlab, region, gold=recipient == "eu_gold")
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
        assert pages >= 1


def _split(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return f"{parts.scheme}://{parts.netloc}{parts.path}", query


def test_file_urls_are_bound_to_their_recipient(vlab: ViewLab) -> None:
    eu_files, _ = _files(vlab, "eu_gold", {})
    us_files, _ = _files(vlab, "us_silver", {})
    assert {f["id"] for f in eu_files}.isdisjoint({f["id"] for f in us_files})
    base, query = _split(eu_files[0]["url"])
    query["rcp"] = "us_silver"  # claim another recipient: the signature no longer holds
    assert requests.get(f"{base}?{urlencode(query)}", timeout=10).status_code == 403
    # a recipient whose grant is revoked cannot use the URLs it got, nor query again
    vlab.add_recipient("eu_temp", "'region' = 'EU'")
    files, _ = _files(vlab, "eu_temp", {})
    assert requests.get(files[0]["url"], timeout=10).status_code == 200
    vlab.provider.sql(f"REVOKE SELECT ON SHARE {SHARE} FROM RECIPIENT eu_temp")
    assert requests.get(files[0]["url"], timeout=10).status_code == 403
    resp = vlab.api(
        "eu_temp", "POST", f"/shares/{SHARE}/schemas/crm/tables/customers/query", json={}
    )
    assert resp.status_code == 404


# ------------------------------------------------------------------------------------ caching, versions
def test_second_read_reuses_the_materialization(vlab: ViewLab) -> None:
    _read(vlab, "eu_gold")
    state = vlab.state_file("eu_gold")
    before = state.stat().st_mtime_ns, _version(vlab, "eu_gold")
    for fmt in (None, False, True):
        _read(vlab, "eu_gold", fmt)
    assert (state.stat().st_mtime_ns, _version(vlab, "eu_gold")) == before


def test_version_moves_only_when_the_result_changes(vlab: ViewLab) -> None:
    _read(vlab, "eu_gold"), _read(vlab, "us_silver")
    eu0, us0 = _version(vlab, "eu_gold"), _version(vlab, "us_silver")
    us_state = vlab.state_file("us_silver").stat().st_mtime_ns
    # an APAC customer: nobody's result changes; the view is re-run (new source version), not re-committed
    vlab.provider.sql(
        "INSERT INTO retail.crm.customers VALUES (100, 'APAC', 'c100@example.test', 1.0)"
    )
    assert (_version(vlab, "eu_gold"), _version(vlab, "us_silver")) == (eu0, us0)
    assert vlab.state_file("us_silver").stat().st_mtime_ns != us_state
    # an EU customer: only the EU recipient's view moves, and it sees the row at once
    vlab.provider.sql(
        "INSERT INTO retail.crm.customers VALUES (101, 'EU', 'c101@example.test', 2.0)"
    )
    assert (_version(vlab, "eu_gold"), _version(vlab, "us_silver")) == (eu0 + 1, us0)
    eu = _read(vlab, "eu_gold")
    assert 101 in set(eu.id) and 100 not in set(eu.id)
    pd.testing.assert_frame_equal(eu, _expected(vlab, "EU", gold=True), check_dtype=False)
    # an update of a US customer moves the US view only
    vlab.provider.sql("UPDATE retail.crm.customers SET spend = spend + 1 WHERE id = 1")
    assert (_version(vlab, "eu_gold"), _version(vlab, "us_silver")) == (eu0 + 1, us0 + 1)
    pd.testing.assert_frame_equal(
        _read(vlab, "us_silver", True), _expected(vlab, "US", gold=False), check_dtype=False
    )


def test_recipient_property_changes_are_seen(vlab: ViewLab) -> None:
    vlab.add_recipient("apac_partner", "'region' = 'APAC', 'tier' = 'silver'")
    assert set(_read(vlab, "apac_partner").email) == {"***"}
    vlab.provider.sql("ALTER RECIPIENT apac_partner SET PROPERTIES ('tier' = 'gold')")
    pd.testing.assert_frame_equal(
        _read(vlab, "apac_partner"), _expected(vlab, "APAC", gold=True), check_dtype=False
    )
    vlab.add_recipient("no_region", "'tier' = 'gold'")  # no region property: no row at all
    empty = _read(vlab, "no_region", False)
    assert empty.empty and list(empty.columns) == ["id", "region", "email", "spend"]


def test_history_and_changes_are_refused(vlab: ViewLab) -> None:
    url = vlab.url("eu_gold")
    attempts = [
        lambda: delta_sharing.load_table_changes_as_pandas(url, starting_version=0),
        lambda: delta_sharing.load_as_pandas(url, version=0),
        lambda: delta_sharing.load_as_pandas(url, timestamp="2024-01-01T00:00:00Z"),
        lambda: delta_sharing.get_table_version(url, starting_timestamp="2024-01-01T00:00:00Z"),
    ]
    for attempt in attempts:
        with pytest.raises(requests.HTTPError) as info:
            attempt()
        assert info.value.response.status_code == 400
        assert "UNSUPPORTED_OPERATION" in str(info.value) and "shared view" in str(info.value)
    resp = vlab.api(
        "eu_gold",
        "POST",
        f"/shares/{SHARE}/schemas/crm/tables/customers/query",
        json={"startingVersion": 0},
    )
    assert resp.status_code == 400 and resp.json()["errorCode"] == "UNSUPPORTED_OPERATION"
    # the table itself still has its history
    changes = delta_sharing.load_table_changes_as_pandas(vlab.url("eu_gold", "raw.customers"), 0)
    assert len(changes) >= 40


def test_removed_view_is_gone(vlab: ViewLab) -> None:
    vlab.provider.sql(f"ALTER SHARE {SHARE} ADD VIEW {VIEW} AS extra.customers")
    assert len(delta_sharing.load_as_pandas(vlab.url("us_silver", "extra.customers"))) > 0
    vlab.provider.sql(f"ALTER SHARE {SHARE} REMOVE VIEW extra.customers")
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_as_pandas(vlab.url("us_silver", "extra.customers"))
    assert info.value.response.status_code == 404


# ------------------------------------------------------------------------------------ IP access lists
def _audit_rows(lab: ViewLab, recipient: str, status: int) -> pd.DataFrame:
    deadline = time.monotonic() + 10
    while True:
        audit = open_catalog(lab.home).audit_frame()
        rows = audit[(audit.recipient == recipient) & (audit.status_code == status)]
        if len(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_ip_access_list_refuses_other_addresses_everywhere(vlab: ViewLab) -> None:
    vlab.add_recipient("ip_partner", "'region' = 'EU', 'tier' = 'gold'")
    files, _ = _files(vlab, "ip_partner", {})  # URLs issued while every address was allowed
    vlab.provider.sql(f"ALTER RECIPIENT ip_partner SET IP ACCESS LIST ('{OTHER_HOST}')")
    # 127.0.0.1, through the official client: a clear 403
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.SharingClient(vlab.profiles["ip_partner"]).list_shares()
    assert info.value.response.status_code == 403
    message = info.value.response.json()["message"]
    assert "not allowed from 127.0.0.1" in message and "IP access list" in message
    with pytest.raises(requests.HTTPError):
        delta_sharing.load_as_pandas(vlab.url("ip_partner"))
    t = f"/shares/{SHARE}/schemas/crm/tables/customers"
    endpoints = [
        ("GET", "/shares"),
        ("GET", f"/shares/{SHARE}"),
        ("GET", f"/shares/{SHARE}/schemas"),
        ("GET", f"/shares/{SHARE}/schemas/crm/tables"),
        ("GET", f"/shares/{SHARE}/all-tables"),
        ("GET", f"{t}/version"),
        ("GET", f"{t}/metadata"),
        ("POST", f"{t}/query"),
        ("GET", "/shares/partners/schemas/raw/tables/customers/changes?startingVersion=0"),
    ]
    for method, path in endpoints:
        resp = vlab.api("ip_partner", method, path, json={} if method == "POST" else None)
        assert resp.status_code == 403, (path, resp.status_code)
        assert resp.json()["errorCode"] == "PERMISSION_DENIED"
    assert requests.get(files[0]["url"], timeout=10).status_code == 403  # downloads too
    # 127.0.0.2: everything works
    other = bound_session(OTHER_HOST)
    for method, path in endpoints:
        resp = vlab.api(
            "ip_partner", method, path, session=other, json={} if method == "POST" else None
        )
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
    fresh = _files_from(vlab, "ip_partner", other)
    got = pd.concat([_download(f["url"], other) for f in fresh]).sort_values(
        "id", ignore_index=True
    )
    pd.testing.assert_frame_equal(got, _expected(vlab, "EU", gold=True), check_dtype=False)
    assert other.get(files[0]["url"], timeout=10).status_code == 200
    # the refusals are in the audit log, with the refused address
    refused = _audit_rows(vlab, "ip_partner", 403)
    assert len(refused) >= len(endpoints) + 1
    assert set(refused.client_address) == {"127.0.0.1"}
    assert "downloadFile" in set(refused.action)
    allowed = _audit_rows(vlab, "ip_partner", 200)
    assert OTHER_HOST in set(allowed.client_address)
    # UNSET: 127.0.0.1 is welcome again
    vlab.provider.sql("ALTER RECIPIENT ip_partner UNSET IP ACCESS LIST")
    assert len(delta_sharing.load_as_pandas(vlab.url("ip_partner"))) > 0


def _files_from(lab: ViewLab, recipient: str, session: requests.Session) -> list[dict[str, Any]]:
    resp = lab.api(
        recipient, "POST", f"/shares/{SHARE}/schemas/crm/tables/customers/query", session, json={}
    )
    assert resp.status_code == 200, resp.text
    lines = [json.loads(x) for x in resp.text.splitlines()]
    return [line["file"] for line in lines if "file" in line]


def test_cidr_ranges(vlab: ViewLab) -> None:
    vlab.add_recipient("cidr_partner", "'region' = 'US'")
    other = bound_session(OTHER_HOST)
    vlab.provider.sql(
        "ALTER RECIPIENT cidr_partner SET IP ACCESS LIST ('192.0.2.0/24', '198.51.100.7')"
    )
    assert vlab.api("cidr_partner", "GET", "/shares").status_code == 403
    assert vlab.api("cidr_partner", "GET", "/shares", session=other).status_code == 403
    vlab.provider.sql("ALTER RECIPIENT cidr_partner SET IP ACCESS LIST ('127.0.0.0/8')")
    assert vlab.api("cidr_partner", "GET", "/shares").status_code == 200
    assert vlab.api("cidr_partner", "GET", "/shares", session=other).status_code == 200
    # other recipients are not affected by this one's list
    assert vlab.api("us_silver", "GET", "/shares", session=other).status_code == 200


def test_activation_link_respects_the_ip_list(vlab: ViewLab) -> None:
    vlab.provider.sql(
        f"CREATE RECIPIENT act_partner; ALTER RECIPIENT act_partner SET IP ACCESS LIST ('{OTHER_HOST}')"
    )
    code = vlab.provider.catalog.create_activation("act_partner")
    url = f"{vlab.server.endpoint}activation/{code}"
    headers = {"Accept": "application/json"}
    denied = requests.get(url, headers=headers, timeout=10)
    assert denied.status_code == 403 and "IP access list" in denied.json()["message"]
    assert vlab.provider.catalog.activation_pending("act_partner")  # the refusal burned nothing
    ok = bound_session(OTHER_HOST).get(url, headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["bearerToken"].startswith("dss_")
