"""Discovery endpoints (protocol §1.1-§1.5) driven by the official client and its REST client."""

from __future__ import annotations

import delta_sharing
from delta_sharing.protocol import DeltaSharingProfile, Schema, Share
from delta_sharing.rest_client import DataSharingRestClient

from .conftest import SharingLab


def _rest(lab: SharingLab, recipient: str = "alice") -> DataSharingRestClient:
    return DataSharingRestClient(DeltaSharingProfile.read_from_file(str(lab.profiles[recipient])))


def test_list_shares_only_granted(lab: SharingLab) -> None:
    client = delta_sharing.SharingClient(str(lab.profiles["alice"]))
    assert sorted(s.name for s in client.list_shares()) == [
        "extra_share",
        "regional_share",
        "retail_share",
    ]
    bob = delta_sharing.SharingClient(str(lab.profiles["bob"]))
    assert sorted(s.name for s in bob.list_shares()) == ["hidden_share", "regional_share"]


def test_list_schemas_tables_and_all_tables(lab: SharingLab) -> None:
    client = delta_sharing.SharingClient(str(lab.profiles["alice"]))
    share = Share(name="retail_share")
    schemas = client.list_schemas(share)
    assert sorted(s.name for s in schemas) == ["core", "other"]
    assert all(s.share == "retail_share" for s in schemas)
    core = client.list_tables(Schema(name="core", share="retail_share"))
    assert sorted(t.name for t in core) == ["events", "sales"]
    assert all(t.schema == "core" and t.share == "retail_share" for t in core)
    every = client.list_all_tables()
    triples = sorted((t.share, t.schema, t.name) for t in every)
    assert triples == [
        ("extra_share", "misc", "ntz"),
        ("extra_share", "misc", "plain"),
        ("regional_share", "regional", "events"),
        ("regional_share", "regional", "sales"),
        ("retail_share", "core", "events"),
        ("retail_share", "core", "sales"),
        ("retail_share", "other", "plain"),
    ]


def test_list_shares_paging_max_results_1(lab: SharingLab) -> None:
    rest = _rest(lab)
    names: list[str] = []
    token = None
    for _ in range(10):
        page = rest.list_shares(max_results=1, page_token=token)
        assert len(page.shares) <= 1
        names += [s.name for s in page.shares]
        token = page.next_page_token
        if not token:
            break
    assert sorted(names) == ["extra_share", "regional_share", "retail_share"]
    assert len(names) == len(set(names)), "a page repeated a share"


def test_list_schemas_and_tables_paging(lab: SharingLab) -> None:
    rest = _rest(lab)
    schemas: list[str] = []
    token = None
    while True:
        page = rest.list_schemas(Share(name="retail_share"), max_results=1, page_token=token)
        schemas += [s.name for s in page.schemas]
        token = page.next_page_token
        if not token:
            break
    assert sorted(schemas) == ["core", "other"]

    tables: list[str] = []
    token = None
    while True:
        page = rest.list_tables(
            Schema(name="core", share="retail_share"), max_results=1, page_token=token
        )
        assert len(page.tables) <= 1
        tables += [t.name for t in page.tables]
        token = page.next_page_token
        if not token:
            break
    assert sorted(tables) == ["events", "sales"]

    every: list[str] = []
    token = None
    while True:
        page = rest.list_all_tables(Share(name="retail_share"), max_results=1, page_token=token)
        every += [f"{t.schema}.{t.name}" for t in page.tables]
        token = page.next_page_token
        if not token:
            break
    assert sorted(every) == ["core.events", "core.sales", "other.plain"]


def test_max_results_zero_returns_no_items(lab: SharingLab) -> None:
    resp = lab.get("/shares?maxResults=0")
    assert resp.status_code == 200, resp.text
    assert resp.json().get("items", []) == []


def test_get_share_and_json_on_one_line(lab: SharingLab) -> None:
    resp = lab.get("/shares/retail_share")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.text.strip().count("\n") == 0, "list/get JSON must be on the first line"
    assert resp.json()["share"]["name"] == "retail_share"


def test_names_are_case_insensitive(lab: SharingLab) -> None:
    resp = lab.get("/shares/RETAIL_Share/schemas/CORE/tables")
    assert resp.status_code == 200, resp.text
    assert sorted(t["name"].lower() for t in resp.json()["items"]) == ["events", "sales"]
    version = lab.get("/shares/Retail_Share/schemas/Core/tables/SALES/version")
    assert version.status_code == 200, version.text
    assert int(version.headers["Delta-Table-Version"]) == 3


def test_table_items_shape(lab: SharingLab) -> None:
    resp = lab.get("/shares/retail_share/all-tables")
    assert resp.status_code == 200
    for item in resp.json()["items"]:
        assert item["share"] == "retail_share"
        assert {"name", "schema", "share"} <= set(item)
        assert item.get("accessModes", ["url"]) == ["url"]


def test_health(lab: SharingLab) -> None:
    resp = lab.session.get(f"{lab.server.url}/health", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
