"""Security: signed URLs, tokens (revoked, rotated, expired), grants, partition filters, path traversal."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import delta_sharing
import pyarrow as pa
import pytest
import requests
from deltalake import DeltaTable

from .conftest import SharingLab


def _split(url: str) -> tuple[str, str, dict[str, str]]:
    """(base up to /files/, file token, query parameters) of a signed download URL."""
    parts = urlsplit(url)
    head, _, token = parts.path.rpartition("/")
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return f"{parts.scheme}://{parts.netloc}{head}/", token, query


def _join(base: str, token: str, query: dict[str, str]) -> str:
    return f"{base}{token}?{urlencode(query)}"


def _assert_denied(lab: SharingLab, resp: requests.Response, secrets: tuple[str, ...] = ()) -> None:
    """403 with the JSON error shape, and nothing in it that names a path on the server."""
    assert resp.status_code == 403, (resp.status_code, resp.text[:200])
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) >= {"errorCode", "message"}
    for needle in (str(lab.home), "parquet", "_delta_log", "catalog.db", "/tmp", *secrets):
        assert needle not in resp.text


@pytest.fixture(scope="module")
def file_urls(lab: SharingLab) -> list[dict[str, Any]]:
    return lab.query("retail_share", "core", "sales").files


def test_signed_url_downloads_without_bearer(
    lab: SharingLab, file_urls: list[dict[str, Any]]
) -> None:
    file = file_urls[0]
    # No Authorization header, like the client's aiohttp downloads.
    resp = requests.get(file["url"], timeout=10)
    assert resp.status_code == 200
    assert len(resp.content) == file["size"]
    assert resp.content[:4] == b"PAR1"


def test_head_and_range_downloads(lab: SharingLab, file_urls: list[dict[str, Any]]) -> None:
    file = file_urls[0]
    head = requests.head(file["url"], timeout=10)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == file["size"]
    part = requests.get(file["url"], headers={"Range": "bytes=0-3"}, timeout=10)
    assert part.status_code == 206
    assert part.content == b"PAR1"
    assert part.headers["Content-Range"] == f"bytes 0-3/{file['size']}"
    tail = requests.get(file["url"], headers={"Range": "bytes=-4"}, timeout=10)
    assert tail.status_code == 206 and tail.content == b"PAR1"


def test_expiration_timestamp_is_reported(lab: SharingLab, file_urls: list[dict[str, Any]]) -> None:
    now_ms = time.time() * 1000
    for file in file_urls:
        assert now_ms + 10 * 60_000 < file["expirationTimestamp"] < now_ms + 2 * 24 * 3600_000
        _, _, query = _split(file["url"])
        assert int(query["exp"]) == file["expirationTimestamp"]


def test_tampered_urls_are_denied(lab: SharingLab, file_urls: list[dict[str, Any]]) -> None:
    base, token, query = _split(file_urls[0]["url"])
    _, other_token, _ = _split(file_urls[1]["url"])
    sig = query["X-Amz-Signature"]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    attempts = [
        _join(base, token, {**query, "X-Amz-Signature": flipped}),
        _join(base, token, {**query, "exp": str(int(query["exp"]) + 1000)}),
        _join(base, other_token, query),  # the signature of another file
        _join(base, token, {k: v for k, v in query.items() if k != "X-Amz-Signature"}),
        _join(base, token[:-2], query),
        _join(base, token + "AA", query),
        _join(base, token, {**query, "exp": "soon"}),
    ]
    if "rcp" in query:
        attempts.append(_join(base, token, {**query, "rcp": "bob"}))
    for url in attempts:
        _assert_denied(lab, requests.get(url, timeout=10), (token,))
        head = requests.head(url, timeout=10)
        assert head.status_code == 403


def _signer(lab: SharingLab) -> Any:
    from helpers.server.signing import Signer

    return Signer((lab.home / "server" / "secret.key").read_bytes())


def test_expired_url_is_denied(lab: SharingLab, file_urls: list[dict[str, Any]]) -> None:
    """A correctly signed URL whose expiry has passed gets 403 (signed with the server's own key)."""
    signer = _signer(lab)
    base, token, query = _split(file_urls[0]["url"])
    rcp = query.get("rcp", "")
    # Sanity: re-signing the URL the way the server does gives a URL the server accepts...
    future = int(time.time() * 1000) + 60_000
    ok = _join(
        base,
        token,
        {**query, "exp": str(future), "X-Amz-Signature": signer.sign_file(token, future, rcp)},
    )
    assert requests.get(ok, timeout=10).status_code == 200
    # ...so the refusal below is about the expiry alone.
    past = int(time.time() * 1000) - 1_000
    expired = _join(
        base,
        token,
        {**query, "exp": str(past), "X-Amz-Signature": signer.sign_file(token, past, rcp)},
    )
    _assert_denied(lab, requests.get(expired, timeout=10))


def test_validly_signed_out_of_table_paths_are_denied(
    lab: SharingLab, file_urls: list[dict[str, Any]]
) -> None:
    """Even a URL signed with the server's key only serves files of that table version's log."""
    from helpers.catalog import Catalog
    from helpers.server.signing import FileRef

    signer = _signer(lab)
    table = Catalog(lab.home / "catalog.db").get_shared_table("retail_share", "core", "sales")
    base, _, query = _split(file_urls[0]["url"])
    rcp = query.get("rcp", "")
    exp = int(time.time() * 1000) + 60_000
    for path in (
        "../../catalog.db",
        "../../server/secret.key",
        "_delta_log/00000000000000000000.json",
        "/etc/passwd",
        "region=emea/../../plain/_delta_log/00000000000000000000.json",
    ):
        token = signer.file_token(FileRef(table.id, 3, path, "retail_share", "core", "sales"))
        url = _join(
            base,
            token,
            {**query, "exp": str(exp), "X-Amz-Signature": signer.sign_file(token, exp, rcp)},
        )
        _assert_denied(lab, requests.get(url, timeout=10))
    # A real file of the table under another table's id is refused too.
    real = str(pa.table(DeltaTable(str(lab.tables["sales"])).get_add_actions()).column("path")[0])
    token = signer.file_token(FileRef(table.id, 3, real, "retail_share", "core", "sales"))
    url = _join(
        base,
        token,
        {**query, "exp": str(exp), "X-Amz-Signature": signer.sign_file(token, exp, rcp)},
    )
    assert requests.get(url, timeout=10).status_code == 200  # sanity: this is how the server signs
    token = signer.file_token(FileRef("not-the-table-id", 3, real, "retail_share", "core", "sales"))
    url = _join(
        base,
        token,
        {**query, "exp": str(exp), "X-Amz-Signature": signer.sign_file(token, exp, rcp)},
    )
    _assert_denied(lab, requests.get(url, timeout=10))


@pytest.mark.parametrize(
    "path",
    [
        "/delta-sharing/files/../../catalog.db",
        "/delta-sharing/files/..%2F..%2Fcatalog.db",
        "/delta-sharing/files/%2e%2e/%2e%2e/catalog.db",
        "/delta-sharing/files/....//....//catalog.db",
        "/delta-sharing/files/%2Fetc%2Fpasswd",
        "/delta-sharing/files/..%5C..%5Ccatalog.db",
        "/delta-sharing/../catalog.db",
        "/delta-sharing/files/",
    ],
)
def test_path_traversal_on_download_route(lab: SharingLab, path: str) -> None:
    # http.client sends the path as written (requests/urllib3 would normalise the dot segments).
    conn = http.client.HTTPConnection(lab.server.host, lab.server.port, timeout=10)
    try:
        conn.request("GET", f"{path}?exp=99999999999999&X-Amz-Signature=00")
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    assert resp.status in (400, 403, 404), (resp.status, body[:200])
    assert "SQLite" not in body and "root:" not in body
    assert str(lab.home) not in body


def test_missing_or_wrong_token_is_401(lab: SharingLab) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Authorization": "Bearer " + lab.tokens["alice"] + "x"},
        {"Authorization": "Bearer"},
    ):
        resp = lab.session.get(f"{lab.base}/shares", headers=headers, timeout=10)
        assert resp.status_code == 401, headers
        assert set(resp.json()) >= {"errorCode", "message"}
        resp = lab.session.post(
            f"{lab.base}/shares/retail_share/schemas/core/tables/sales/query",
            json={},
            headers=headers,
            timeout=10,
        )
        assert resp.status_code == 401


def test_revoked_token_is_401(lab: SharingLab) -> None:
    name = lab.unique("revoked")
    token = lab.add_recipient(name, shares=("retail_share",))
    assert lab.get("/shares", token=token).status_code == 200
    lab.catalog.revoke_tokens(name)
    resp = lab.get("/shares", token=token)
    assert resp.status_code == 401
    assert resp.json()["errorCode"]
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.SharingClient(str(lab.profiles[name])).list_shares()
    assert info.value.response.status_code == 401


def test_rotated_token_overlap_then_expiry(lab: SharingLab) -> None:
    name = lab.unique("rotated")
    old = lab.add_recipient(name, shares=("retail_share",))
    new = lab.catalog.rotate_token(name, expire_existing_in_seconds=3).token
    # During the overlap both tokens work.
    assert lab.get("/shares", token=old).status_code == 200
    assert lab.get("/shares", token=new).status_code == 200
    time.sleep(3.2)
    assert lab.get("/shares", token=old).status_code == 401
    assert lab.get("/shares", token=new).status_code == 200
    # Rotating with no overlap retires the current token at once.
    newest = lab.catalog.rotate_token(name, expire_existing_in_seconds=0).token
    assert lab.get("/shares", token=new).status_code == 401
    assert lab.get("/shares", token=newest).status_code == 200


def test_expired_token_is_401(lab: SharingLab) -> None:
    name = lab.unique("expiring")
    token = lab.add_recipient(name, shares=("retail_share",), lifetime_seconds=3)
    assert lab.get("/shares", token=token).status_code == 200
    time.sleep(3.2)
    assert lab.get("/shares", token=token).status_code == 401


def _normalised(resp: requests.Response, name: str) -> tuple[int, str, str]:
    body = resp.json()
    return resp.status_code, body["errorCode"], body["message"].replace(name, "<share>")


def test_ungranted_share_is_identical_to_nonexistent(lab: SharingLab) -> None:
    # hidden_share exists (granted to bob); ghost_share_ has the same length and does not exist.
    hidden, ghost = "hidden_share", "ghost_share_"
    assert len(hidden) == len(ghost)
    for suffix in (
        "",
        "/schemas",
        "/all-tables",
        "/schemas/secret/tables",
        "/schemas/secret/tables/plain/version",
        "/schemas/secret/tables/plain/metadata",
        "/schemas/secret/tables/plain/changes?startingVersion=0",
    ):
        a = lab.get(f"/shares/{hidden}{suffix}")
        b = lab.get(f"/shares/{ghost}{suffix}")
        assert a.status_code == 404, suffix
        assert _normalised(a, hidden) == _normalised(b, ghost), suffix
        assert a.headers.get("Content-Type") == b.headers.get("Content-Type")
    a = lab.post(f"/shares/{hidden}/schemas/secret/tables/plain/query", {})
    b = lab.post(f"/shares/{ghost}/schemas/secret/tables/plain/query", {})
    assert a.status_code == b.status_code == 404
    assert _normalised(a, hidden) == _normalised(b, ghost)
    # Bob, who was granted it, reads it.
    assert lab.get(f"/shares/{hidden}/all-tables", recipient="bob").status_code == 200


def test_revoked_grant_hides_share(lab: SharingLab) -> None:
    name = lab.unique("regrant")
    lab.add_recipient(name, shares=("extra_share",))
    assert lab.get("/shares/extra_share/all-tables", recipient=name).status_code == 200
    lab.catalog.revoke("extra_share", name)
    assert lab.get("/shares/extra_share/all-tables", recipient=name).status_code == 404
    assert lab.get("/shares", recipient=name).json().get("items", []) == []


@pytest.mark.parametrize("who,region,files", [("alice", "emea", 3), ("bob", "amer", 2)])
def test_partition_filter_per_recipient(lab: SharingLab, who: str, region: str, files: int) -> None:
    url = lab.url(who, "regional_share", "regional", "sales")
    for fmt in (None, True):
        df = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert set(df["region"]) == {region}
        assert len(df) == {"emea": 10 + 3 + 2, "amer": 10 + 3}[region]
    resp = lab.query("regional_share", "regional", "sales", recipient=who)
    assert len(resp.files) == files
    assert {f["partitionValues"]["region"] for f in resp.files} == {region}


def test_partition_filter_cannot_be_escaped(lab: SharingLab) -> None:
    """No request shape makes the server list (and so mint a URL for) another region's file."""
    other = {
        "op": "equal",
        "children": [
            {"op": "column", "name": "region", "valueType": "string"},
            {"op": "literal", "value": "amer", "valueType": "string"},
        ],
    }
    bodies: list[dict[str, Any]] = [
        {},
        {"jsonPredicateHints": json.dumps(other)},
        {"jsonPredicateHints": json.dumps({"op": "or", "children": [other, other]})},
        {"version": 1},
        {"version": 0},
        {"startingVersion": 0},
        {"limitHint": 1000},
        {"maxFiles": 1},
        {"includeRefreshToken": True},
    ]
    seen: list[dict[str, Any]] = []
    for body in bodies:
        for caps in (None, "responseformat=delta;readerfeatures=deletionvectors"):
            resp = lab.query(
                "regional_share", "regional", "sales", body, recipient="alice", capabilities=caps
            )
            for line in resp.lines[2:]:
                action = next(iter(line.values()))
                if "deltaSingleAction" in action:
                    action = next(iter(action["deltaSingleAction"].values()))
                if "partitionValues" in action:
                    seen.append(action)
    assert seen and {a["partitionValues"]["region"] for a in seen} == {"emea"}
    # Streaming over the CDF table: its update/delete/merge commits remove files of both regions.
    stream = lab.query(
        "regional_share", "regional", "events", {"startingVersion": 0}, recipient="alice"
    )
    assert stream.of("remove")
    assert {a["partitionValues"]["region"] for a in stream.of("add") + stream.of("remove")} == {
        "emea"
    }
    changes = lab.changes(
        "regional_share", "regional", "events", "startingVersion=0", recipient="alice"
    )
    assert {next(iter(x.values()))["partitionValues"]["region"] for x in changes.lines[2:]} == {
        "emea"
    }


def test_partition_filter_recipient_without_property_sees_nothing(lab: SharingLab) -> None:
    name = lab.unique("noregion")
    lab.add_recipient(name, properties={}, shares=("regional_share",))
    resp = lab.post(
        "/shares/regional_share/schemas/regional/tables/sales/query", {}, recipient=name
    )
    if resp.status_code == 200:
        lines = [json.loads(x) for x in resp.text.splitlines()]
        assert [x for x in lines if "file" in x] == []
    else:
        assert 400 <= resp.status_code < 500
        assert set(resp.json()) >= {"errorCode", "message"}


def test_property_change_applies_to_next_request(lab: SharingLab) -> None:
    name = lab.unique("mover")
    lab.add_recipient(name, properties={"region": "emea"}, shares=("regional_share",))
    first = lab.query("regional_share", "regional", "sales", recipient=name)
    assert {f["partitionValues"]["region"] for f in first.files} == {"emea"}
    lab.catalog.set_recipient_properties(name, {"region": "apac"})
    deadline = time.monotonic() + 5
    while True:
        resp = lab.query("regional_share", "regional", "sales", recipient=name)
        regions = {f["partitionValues"]["region"] for f in resp.files}
        if regions == {"apac"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert regions == {"apac"}


def test_activation_link_works_exactly_once(lab: SharingLab) -> None:
    name = lab.unique("activate")
    lab.catalog.create_recipient(name, properties={"region": "amer"})
    lab.catalog.grant("regional_share", name)
    code = lab.catalog.create_activation(name)
    url = f"{lab.base}/activation/{code}"
    first = requests.get(url, timeout=10)
    assert first.status_code == 200, first.text
    profile = first.json()
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"].rstrip("/") == lab.base
    assert profile["bearerToken"].startswith("dss_")
    path = lab.home / "profiles" / f"{name}.share"
    path.write_text(json.dumps(profile))
    df = delta_sharing.load_as_pandas(f"{path}#regional_share.regional.sales")
    assert set(df["region"]) == {"amer"}
    second = requests.get(url, timeout=10)
    assert 400 <= second.status_code < 500
    assert "bearerToken" not in second.text and profile["bearerToken"] not in second.text
    assert set(second.json()) >= {"errorCode", "message"}
    assert requests.get(f"{lab.base}/activation/not-a-code", timeout=10).status_code in (
        400,
        403,
        404,
    )


def test_literal_partition_filter(lab: SharingLab) -> None:
    """``PARTITION (region = 'apac')``: the same for every recipient, on /query and /changes."""
    from helpers.catalog import PartitionClause

    name = lab.unique("apaconly")
    lab.catalog.create_share(name)
    lab.catalog.add_table_to_share(
        name,
        "lab.retail.sales",
        alias="p.sales",
        history=True,
        partition=(PartitionClause("region", "apac", False),),
    )
    lab.add_recipient(name, properties={"region": "emea"}, shares=(name,))
    df = delta_sharing.load_as_pandas(f"{lab.profiles[name]}#{name}.p.sales")
    assert set(df["region"]) == {"apac"} and len(df) == 15
    old = lab.query(name, "p", "sales", {"version": 1}, recipient=name)
    assert {f["partitionValues"]["region"] for f in old.files} == {"apac"} and len(old.files) == 2


def test_concurrent_recipients_never_see_each_others_files(lab: SharingLab) -> None:
    """Interleaved requests of two recipients on one partition-filtered table (shared server caches)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[str, set[str], set[str]]:
        who = ("alice", "bob")[i % 2]
        caps = None if i % 4 < 2 else "responseformat=delta;readerfeatures=deletionvectors"
        session = requests.Session()
        resp = session.post(
            f"{lab.base}/shares/regional_share/schemas/regional/tables/sales/query",
            json={} if i % 3 else {"version": 2},
            headers={**lab.auth(who), **({"delta-sharing-capabilities": caps} if caps else {})},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        regions, recipients = set(), set()
        for line in resp.text.splitlines()[2:]:
            file = json.loads(line)["file"]
            action = file.get("deltaSingleAction", {}).get("add", file)
            regions.add(action["partitionValues"]["region"])
            url = action.get("url") or action["path"]
            # rcp: the recipient's name, then (after a newline) the access key the URL is bound to
            rcps = parse_qs(urlsplit(url).query).get("rcp", [])
            recipients.update(r.partition("\n")[0] for r in rcps)
        return who, regions, recipients

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(64)))
    for who, regions, recipients in results:
        assert regions == {"alice": {"emea"}, "bob": {"amer"}}[who]
        assert recipients <= {who}


def test_urls_of_historical_and_removed_files_download(lab: SharingLab) -> None:
    """Files no longer in the latest snapshot stay downloadable through URLs minted for their version."""
    old = lab.query("retail_share", "core", "events", {"version": 0})
    latest = {f["id"] for f in lab.query("retail_share", "core", "events").files}
    assert {f["id"] for f in old.files} - latest, "v0 files were replaced by later commits"
    stream = lab.query("retail_share", "core", "events", {"startingVersion": 2, "endingVersion": 4})
    removes = stream.of("remove")
    assert removes
    cdf = lab.changes("retail_share", "core", "events", "startingVersion=2").of("cdf")
    for action in [*old.files, *removes, *cdf]:
        got = requests.get(action["url"], timeout=10)
        assert got.status_code == 200, got.text[:200]
        assert len(got.content) == action["size"] and got.content[:4] == b"PAR1"
