"""Revocation is immediate everywhere: signed file URLs, page tokens and refresh tokens stop working
when the recipient's tokens are revoked, the grant is revoked, the table leaves the share, or the
partition filter the recipient is under changes; a table removed and added again gets a new id; the
size and file count reported are those of what the recipient may see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import delta_sharing
import pyarrow as pa
import pytest
import requests
from deltalake import write_deltalake

from helpers.catalog import PartitionClause

from .conftest import BASE_TS, SharingLab, build_plain_table


def _shared_sales(lab: SharingLab, *, partition: bool = False) -> tuple[str, str]:
    """A new share of the sales table (region filter by property when ``partition``) and a recipient."""
    name = lab.unique("rev")
    clauses = (PartitionClause("region", "region", True),) if partition else ()
    lab.catalog.create_share(name)
    lab.catalog.add_table_to_share(
        name, "lab.retail.sales", alias="s.sales", history=True, partition=clauses
    )
    lab.add_recipient(name, properties={"region": "emea"}, shares=(name,))
    return name, name


def _urls(lab: SharingLab, share: str, who: str) -> list[str]:
    return [f["url"] for f in lab.query(share, "s", "sales", recipient=who).files]


REVOCATIONS: dict[str, Callable[[SharingLab, str, str], None]] = {
    "tokens revoked": lambda lab, share, who: lab.catalog.revoke_tokens(who),
    "token rotated (old one expired)": lambda lab, share, who: lab.catalog.rotate_token(who, 0),
    "grant revoked": lambda lab, share, who: lab.catalog.revoke(share, who),
    "table removed": lambda lab, share, who: lab.catalog.remove_table_from_share(share, "s.sales"),
    "filter property changed": lambda lab, share, who: lab.catalog.set_recipient_properties(
        who, {"region": "amer"}
    ),
}


@pytest.mark.parametrize("change", sorted(REVOCATIONS))
def test_signed_urls_die_with_the_access(lab: SharingLab, change: str) -> None:
    share, who = _shared_sales(lab, partition=True)
    urls = _urls(lab, share, who)
    assert urls and all(requests.get(u, timeout=10).status_code == 200 for u in urls[:2])
    REVOCATIONS[change](lab, share, who)
    for url in urls:  # no cache, no grace period
        assert requests.get(url, timeout=10).status_code == 403, change


def test_urls_die_when_the_table_is_removed_and_added_again(lab: SharingLab) -> None:
    share, who = _shared_sales(lab)
    before = lab.get(f"/shares/{share}/all-tables", recipient=who).json()["items"][0]["id"]
    urls = _urls(lab, share, who)
    lab.catalog.remove_table_from_share(share, "s.sales")
    lab.catalog.add_table_to_share(share, "lab.retail.sales", alias="s.sales", history=True)
    after = lab.get(f"/shares/{share}/all-tables", recipient=who).json()["items"][0]["id"]
    assert before != after, "a re-added table is a new table"
    assert all(requests.get(u, timeout=10).status_code == 403 for u in urls)
    assert all(requests.get(u, timeout=10).status_code == 200 for u in _urls(lab, share, who))


def _page_and_refresh(lab: SharingLab, share: str, who: str) -> tuple[str, str]:
    paged = lab.query(share, "s", "sales", {"maxFiles": 2}, recipient=who)
    refresh = lab.query(share, "s", "sales", {"includeRefreshToken": True}, recipient=who)
    page = paged.of("endStreamAction")[0]["nextPageToken"]
    token = refresh.of("endStreamAction")[0]["refreshToken"]
    assert page and token
    return page, token


def _status(lab: SharingLab, share: str, who: str, body: dict[str, Any]) -> int:
    return lab.post(
        f"/shares/{share}/schemas/s/tables/sales/query", body, recipient=who
    ).status_code


@pytest.mark.parametrize("change", ["tokens revoked", "filter property changed", "grant revoked"])
def test_page_and_refresh_tokens_die_with_the_access(lab: SharingLab, change: str) -> None:
    share, who = _shared_sales(lab, partition=True)
    page, refresh = _page_and_refresh(lab, share, who)
    assert _status(lab, share, who, {"maxFiles": 2, "pageToken": page}) == 200
    assert _status(lab, share, who, {"refreshToken": refresh}) == 200
    REVOCATIONS[change](lab, share, who)
    if change == "tokens revoked":  # the recipient gets a new token: the old tokens' pages are dead
        lab.tokens[who] = lab.catalog.issue_token(who).token
    statuses = {
        _status(lab, share, who, {"maxFiles": 2, "pageToken": page}),
        _status(lab, share, who, {"refreshToken": refresh}),
    }
    assert statuses <= {400, 404} and 200 not in statuses, (change, statuses)


def test_page_tokens_are_bound_to_their_recipient(lab: SharingLab) -> None:
    share, who = _shared_sales(lab)
    page, refresh = _page_and_refresh(lab, share, who)
    other = lab.unique("other")
    lab.add_recipient(other, properties={"region": "emea"}, shares=(share,))
    resp = lab.post(
        f"/shares/{share}/schemas/s/tables/sales/query",
        {"maxFiles": 2, "pageToken": page},
        recipient=other,
    )
    assert resp.status_code == 400 and "another recipient" in resp.json()["message"]


def test_tokens_of_a_table_without_history_never_time_travel(lab: SharingLab) -> None:
    name = lab.unique("nohist")
    path = lab.home / "data" / "test" / name
    build_plain_table(path, rows=5)
    share, who = lab.share_table(path, history=False)
    first = lab.query(share, "s", "t", {"includeRefreshToken": True}, recipient=who)
    refresh = first.of("endStreamAction")[0]["refreshToken"]
    body = {
        "k": pa.array([9], pa.int64()),
        "label": ["x"],
        "ts": pa.array([BASE_TS], pa.timestamp("us", tz="UTC")),
    }
    write_deltalake(str(path), pa.table(body), mode="append")
    resp = lab.post(
        f"/shares/{share}/schemas/s/tables/t/query", {"refreshToken": refresh}, recipient=who
    )
    assert resp.status_code == 400 and "without history" in resp.json()["message"]


def test_sizes_are_those_the_recipient_may_see(lab: SharingLab) -> None:
    """alice (emea) on regional_share: /metadata and /query report her files only."""
    path = "/shares/regional_share/schemas/regional/tables/sales"
    meta = lab.get(f"{path}/metadata")
    md = [line for line in lab.parse(meta).lines if "metaData" in line][0]["metaData"]
    files = lab.query("regional_share", "regional", "sales").files
    assert md["numFiles"] == len(files) and md["size"] == sum(f["size"] for f in files)
    full = lab.query("retail_share", "core", "sales")
    full_md = full.of("metaData")[0]
    assert full_md["numFiles"] == len(full.files) > md["numFiles"]
    query_md = lab.query("regional_share", "regional", "sales").of("metaData")[0]
    assert (query_md["numFiles"], query_md["size"]) == (md["numFiles"], md["size"])
    # the official client still reads exactly her partition
    frame = delta_sharing.load_as_pandas(lab.url("alice", "regional_share", "regional", "sales"))
    assert set(frame["region"]) == {"emea"}
