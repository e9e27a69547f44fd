"""Revocation is immediate everywhere: signed file URLs, page tokens and refresh tokens stop working
when the recipient's tokens are revoked, the grant is revoked, the table leaves the share, or the
partition filter the recipient is under changes; a table removed and added again gets a new id; the
size and file count reported are those of what the recipient may see."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


# ======================================================================== page and refresh tokens
# What is tested (and decided) below, over raw HTTP against the real server:
#
# - A /query or /changes page token and a /query refresh token are bound to the recipient, to the
#   bearer token they were minted with and to the access that token had on the table (the access stamp:
#   token, grant, table id, location, history, start version, the partition filter as resolved for the
#   recipient). Any change of these refuses them: 400 "access ... changed" (or 404 when the table or the
#   grant is gone altogether), never a page of the old access.
# - Token rotation: a page or refresh token is the recipient's (a token of another recipient is refused)
#   and lives exactly as long as the bearer token it was minted under stays live with the same access:
#   during a rotation's overlap the recipient may go on paging with either token (a client that switches
#   to its new profile mid-read is not broken); when the old token expires (or is revoked) its page and
#   refresh tokens die with it, under the new token too (400), like the signed URLs minted under it, and
#   the old token itself gets 401. A client then starts its read again with the new token.
# - A list endpoint's nextPageToken carries only a position in a listing that is computed again from the
#   caller's current access at every page: it can never show what is no longer shared (a removed table, a
#   revoked share) and it is refused when the grant is gone; the recipient's new token may continue a
#   listing (it belongs to the recipient's grant, not to a bearer token: it reveals nothing).
_TOKEN_CHANGES: dict[str, Callable[[SharingLab, str, str], None]] = {
    "table removed": lambda lab, share, who: _remove(lab, share),
    "table removed and added again": lambda lab, share, who: _readd(lab, share),
    "token rotated (old one expired)": lambda lab, share, who: _rotate(lab, who, 0),
    "tokens revoked, a new one issued": lambda lab, share, who: _revoke_and_reissue(lab, who),
    "grant revoked": lambda lab, share, who: lab.catalog.revoke(share, who),
    "filter property changed": lambda lab, share, who: lab.catalog.set_recipient_properties(
        who, {"region": "amer"}
    ),
}


def _remove(lab: SharingLab, share: str) -> None:
    for alias in ("s.sales", "s.events"):
        lab.catalog.remove_table_from_share(share, alias)


def _readd(lab: SharingLab, share: str) -> None:
    """Remove both tables and add them again, same aliases, same filter (new ids)."""
    region = (PartitionClause("region", "region", True),)
    for source, alias in (("lab.retail.sales", "s.sales"), ("lab.retail.events", "s.events")):
        lab.catalog.remove_table_from_share(share, alias)
        lab.catalog.add_table_to_share(share, source, alias=alias, history=True, partition=region)


def _rotate(lab: SharingLab, who: str, grace: float) -> str:
    """Rotate ``who``'s token (the old one expires in ``grace`` s); the lab uses the new one after."""
    old = lab.tokens[who]
    lab.tokens[who] = lab.catalog.rotate_token(who, grace).token
    return old


def _revoke_and_reissue(lab: SharingLab, who: str) -> None:
    lab.catalog.revoke_tokens(who)
    lab.tokens[who] = lab.catalog.issue_token(who).token


def _two_table_share(lab: SharingLab) -> tuple[str, str]:
    """A new share of sales and events (CDF), both filtered by the recipient's region, and a recipient
    (emea) who may read it; a third table in another schema for the listings."""
    name = lab.unique("revtok")
    region = (PartitionClause("region", "region", True),)
    lab.catalog.create_share(name)
    for source, alias in (("lab.retail.sales", "s.sales"), ("lab.retail.events", "s.events")):
        lab.catalog.add_table_to_share(name, source, alias=alias, history=True, partition=region)
    lab.catalog.add_table_to_share(name, "lab.retail.plain", alias="u.plain")
    lab.add_recipient(name, properties={"region": "emea"}, shares=(name,))
    return name, name


@dataclass
class _Minted:
    """The page/refresh tokens of one recipient, and how to spend each (-> the response)."""

    spend: dict[str, Callable[[str | None], requests.Response]]


def _mint(lab: SharingLab, share: str, who: str) -> _Minted:
    """Mint a /query page token, a /query refresh token and a /changes page token and check that each
    works; returns how to spend them again (with the lab's current token of ``who``, or ``token``)."""
    t = f"/shares/{share}/schemas/s/tables"
    page = lab.query(share, "s", "sales", {"maxFiles": 1}, recipient=who)
    page_token = page.of("endStreamAction")[0]["nextPageToken"]
    refresh = lab.query(share, "s", "sales", {"includeRefreshToken": True}, recipient=who)
    refresh_token = refresh.of("endStreamAction")[0]["refreshToken"]
    cdf = lab.changes(share, "s", "events", "startingVersion=0&maxFiles=1", recipient=who)
    changes = cdf.of("endStreamAction")[0]["nextPageToken"]
    assert page_token and refresh_token and changes

    def post(body: dict[str, Any]) -> Callable[[str | None], requests.Response]:
        return lambda token: lab.post(
            f"{t}/sales/query", body, recipient=None if token else who, token=token
        )

    spend = {
        "query pageToken": post({"maxFiles": 1, "pageToken": page_token}),
        "query refreshToken": post({"refreshToken": refresh_token}),
        "changes pageToken": lambda token: lab.get(
            f"{t}/events/changes?startingVersion=0&maxFiles=1&pageToken={changes}",
            recipient=None if token else who,
            token=token,
        ),
    }
    for what, fn in spend.items():
        assert fn(None).status_code == 200, what
    return _Minted(spend)


@pytest.mark.parametrize("change", sorted(_TOKEN_CHANGES))
def test_page_and_refresh_tokens_of_query_and_changes_die_with_the_access(
    lab: SharingLab, change: str
) -> None:
    share, who = _two_table_share(lab)
    old_token = lab.tokens[who]
    minted = _mint(lab, share, who)
    _TOKEN_CHANGES[change](lab, share, who)
    for what, spend in minted.spend.items():
        resp = spend(None)  # with the recipient's current token (a new one after rotation)
        assert resp.status_code in (400, 404), (change, what, resp.status_code, resp.text)
        body = resp.json()
        assert body["errorCode"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
        if resp.status_code == 400:  # a re-added table is another table (a new id)
            assert any(
                m in body["message"] for m in ("changed since it was issued", "another table")
            ), (change, what, body)
        if lab.tokens[who] != old_token:  # the old bearer token itself is refused
            assert spend(old_token).status_code == 401, (change, what)


def test_page_tokens_outlive_a_rotation_overlap_only(lab: SharingLab) -> None:
    share, who = _two_table_share(lab)
    minted = _mint(lab, share, who)
    old = _rotate(lab, who, 3600)  # the old token stays valid for an hour
    for what, spend in minted.spend.items():
        assert spend(old).status_code == 200, what  # the old token goes on paging
        assert spend(None).status_code == 200, what  # and so does the new one: same recipient
    lab.catalog.rotate_token(who, 0)  # a third token: the oldest (the minting one) expires now
    lab.tokens[who] = lab.catalog.rotate_token(who, 0).token  # ... and the second one too
    for what, spend in minted.spend.items():
        assert spend(old).status_code == 401, what
        resp = spend(None)
        assert resp.status_code == 400 and "changed since" in resp.json()["message"], what
    again = _mint(lab, share, who)  # the live token mints its own, which work
    assert all(spend(None).status_code == 200 for spend in again.spend.values())


def _listing(lab: SharingLab, path: str, who: str, token: str | None = None) -> list[str]:
    """Every item name of a paged listing, one item per page, from a page token on (or the first)."""
    names: list[str] = []
    for _ in range(20):
        sep = "&" if "?" in path else "?"
        url = path + sep + "maxResults=1" + (f"&pageToken={token}" if token else "")
        resp = lab.get(url, recipient=who)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        names += [i["name"] for i in body.get("items", [])]
        token = body.get("nextPageToken")
        if not token:
            return names
    raise AssertionError("the listing did not end")


def _first_page_token(lab: SharingLab, path: str, who: str) -> str:
    resp = lab.get(path + "?maxResults=1", recipient=who)
    assert resp.status_code == 200
    token = resp.json().get("nextPageToken")
    assert token
    return str(token)


def test_list_page_tokens_never_show_what_is_no_longer_shared(lab: SharingLab) -> None:
    share, who = _two_table_share(lab)
    all_tables = f"/shares/{share}/all-tables"
    assert sorted(_listing(lab, all_tables, who)) == ["events", "plain", "sales"]
    tables_token = _first_page_token(lab, all_tables, who)
    schemas_token = _first_page_token(lab, f"/shares/{share}/schemas", who)
    lab.catalog.remove_table_from_share(share, "s.events")
    lab.catalog.remove_table_from_share(share, "s.sales")
    # the position is kept, the listing is today's: the removed tables are never listed again
    assert _listing(lab, all_tables, who, tables_token) in ([], ["plain"])
    assert "s" not in _listing(lab, f"/shares/{share}/schemas", who, schemas_token)
    # rotation: the old bearer token is refused, the new one may go on listing (nothing is revealed)
    old = _rotate(lab, who, 0)
    url = f"{all_tables}?maxResults=1&pageToken={tables_token}"
    assert lab.get(url, recipient=None, token=old).status_code == 401
    assert lab.get(url, recipient=who).status_code == 200
    # the grant revoked: the listing and its page tokens are refused
    lab.catalog.revoke(share, who)
    for path, token in ((all_tables, tables_token), (f"/shares/{share}/schemas", schemas_token)):
        resp = lab.get(f"{path}?maxResults=1&pageToken={token}", recipient=who)
        assert resp.status_code in (403, 404), resp.text


def test_a_shares_listing_token_after_a_revoked_grant_lists_what_is_left(lab: SharingLab) -> None:
    first, who = _two_table_share(lab)
    second = lab.unique("revtok2")
    lab.catalog.create_share(second)
    lab.catalog.grant(second, who)
    token = _first_page_token(lab, "/shares", who)
    lab.catalog.revoke(first, who)
    lab.catalog.revoke(second, who)
    resp = lab.get(f"/shares?maxResults=1&pageToken={token}", recipient=who)
    assert resp.status_code == 200 and resp.json().get("items", []) == []
