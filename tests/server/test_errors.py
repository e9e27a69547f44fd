"""Error cases of protocol §0 and §10: status codes, error codes and the JSON error shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import delta_sharing
import pytest
import requests
from delta_sharing.protocol import DeltaSharingProfile, Share
from delta_sharing.rest_client import DataSharingRestClient

from .conftest import SharingLab, iso_ms

SALES = "/shares/retail_share/schemas/core/tables/sales"
EVENTS = "/shares/retail_share/schemas/core/tables/events"
PLAIN = "/shares/retail_share/schemas/other/tables/plain"


def assert_error(
    resp: requests.Response, status: int, code: str | None = None, *words: str
) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.text.count("\n") <= 1, "the error JSON is on one line"
    body = resp.json()
    assert isinstance(body.get("errorCode"), str) and body["errorCode"]
    assert isinstance(body.get("message"), str) and body["message"]
    if code:
        assert body["errorCode"] == code, body
    for word in words:
        assert word.lower() in body["message"].lower(), body
    return body


@pytest.mark.parametrize(
    "path",
    [
        "/shares/nope",
        "/shares/nope/schemas",
        "/shares/nope/all-tables",
        "/shares/retail_share/schemas/nope/tables",
        "/shares/retail_share/schemas/core/tables/nope/version",
        "/shares/retail_share/schemas/core/tables/nope/metadata",
        "/shares/retail_share/schemas/nope/tables/sales/metadata",
        "/shares/retail_share/schemas/core/tables/nope/changes?startingVersion=0",
    ],
)
def test_not_found(lab: SharingLab, path: str) -> None:
    assert_error(lab.get(path), 404, "RESOURCE_DOES_NOT_EXIST")


def test_not_found_query_and_client(lab: SharingLab) -> None:
    assert_error(
        lab.post("/shares/retail_share/schemas/core/tables/nope/query", {}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_as_pandas(lab.url("alice", "retail_share", "core", "nope"))
    assert info.value.response.status_code == 404


@pytest.mark.parametrize(
    "body,words",
    [
        ({"version": 1, "timestamp": "2024-01-01T00:00:00Z"}, ()),
        ({"version": 1, "startingVersion": 1}, ()),
        ({"timestamp": "2024-01-01T00:00:00Z", "startingVersion": 0}, ()),
        ({"version": -1}, ()),
        ({"startingVersion": -1}, ()),
        ({"version": 99}, ()),
        ({"startingVersion": 3, "endingVersion": 1}, ()),
        ({"startingVersion": 1, "endingVersion": 99}, ()),
        ({"version": "x3"}, ()),
        ({"timestamp": "2022-04-29"}, ("timestamp",)),
        ({"timestamp": "1715988468.0"}, ("timestamp",)),
        ({"timestamp": "2999-01-01T00:00:00Z"}, ("The provided timestamp",)),
        ({"timestamp": "2000-01-01T00:00:00Z"}, ("The provided timestamp",)),
        ({"maxFiles": 0}, ()),
        ({"maxFiles": -2}, ()),
        ({"pageToken": "garbage"}, ()),
        ({"refreshToken": "garbage"}, ()),
        ({"includeRefreshToken": True, "version": 1}, ()),
        ({"limitHint": -1}, ()),
    ],
)
def test_query_bad_parameters(lab: SharingLab, body: dict, words: tuple[str, ...]) -> None:
    assert_error(lab.post(SALES + "/query", body), 400, None, *words)


def test_query_error_codes(lab: SharingLab) -> None:
    assert_error(
        lab.post(SALES + "/query", {"version": 1, "timestamp": "2024-01-01T00:00:00Z"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert_error(lab.post(SALES + "/query", data="{not json"), 400, "MALFORMED_REQUEST")
    assert_error(lab.post(SALES + "/query", data="[1, 2]"), 400, "MALFORMED_REQUEST")
    assert_error(lab.post(SALES + "/query", {"version": "x3"}), 400, "INVALID_PARAMETER_VALUE")
    assert_error(lab.post(SALES + "/query", {}, headers={"fileidhash": "md5"}), 400)
    ok = lab.post(SALES + "/query", {}, headers={"fileidhash": "parquet"})
    assert ok.status_code == 200


def test_time_travel_needs_history(lab: SharingLab) -> None:
    for body in ({"version": 0}, {"timestamp": "2024-01-01T00:00:00Z"}, {"startingVersion": 0}):
        assert_error(lab.post(PLAIN + "/query", body), 400)
    assert_error(lab.get(PLAIN + "/version?startingTimestamp=2024-01-01T00:00:00Z"), 400)
    assert_error(lab.get(PLAIN + "/changes?startingVersion=0"), 400)
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_as_pandas(lab.url("alice", "retail_share", "other", "plain"), version=0)
    assert info.value.response.status_code == 400


def test_version_startingtimestamp_errors(lab: SharingLab) -> None:
    assert_error(
        lab.get(SALES + "/version?startingTimestamp=2999-01-01T00:00:00Z"),
        400,
        None,
        "after the latest version",
    )
    assert_error(lab.get(SALES + "/version?startingTimestamp=yesterday"), 400)


def test_metadata_time_travel_errors(lab: SharingLab) -> None:
    assert_error(lab.get(SALES + "/metadata?version=1&timestamp=2024-01-01T00:00:00Z"), 400)
    assert_error(lab.get(SALES + "/metadata?version=-1"), 400)
    ok = lab.get(SALES + "/metadata?version=1")
    assert ok.status_code == 200 and ok.headers["Delta-Table-Version"] == "1"


@pytest.mark.parametrize(
    "params,words",
    [
        ("", ("startingVersion",)),
        ("startingVersion=9", ("Start version",)),
        ("startingVersion=3&endingVersion=2", ("End cannot be before start",)),
        ("startingVersion=1&startingTimestamp=2024-01-01T00:00:00Z", ("Multiple starting",)),
        (
            "startingVersion=1&endingVersion=2&endingTimestamp=2024-01-01T00:00:00Z",
            ("Multiple ending",),
        ),
        ("startingTimestamp=2022-04-29", ("startingTimestamp",)),
        ("startingTimestamp=2999-01-01T00:00:00Z", ("The provided timestamp",)),
        ("startingVersion=-1", ()),
        ("startingVersion=abc", ()),
        ("startingVersion=0&maxFiles=0", ()),
        ("startingVersion=0&pageToken=garbage", ()),
    ],
)
def test_changes_bad_parameters(lab: SharingLab, params: str, words: tuple[str, ...]) -> None:
    assert_error(lab.get(EVENTS + "/changes?" + params), 400, None, *words)


def test_changes_on_table_without_cdf(lab: SharingLab) -> None:
    body = assert_error(lab.get(SALES + "/changes?startingVersion=0"), 400)
    assert "cdf" in body["message"].lower() or "change data" in body["message"].lower()
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_table_changes_as_pandas(
            lab.url("alice", "retail_share", "core", "sales"), starting_version=0
        )
    assert info.value.response.status_code == 400


def test_client_without_start_gets_400(lab: SharingLab) -> None:
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_table_changes_as_pandas(
            lab.url("alice", "retail_share", "core", "events")
        )
    assert info.value.response.status_code == 400


def test_changes_timestamp_before_first_commit(lab: SharingLab, events_ts: dict[int, int]) -> None:
    assert_error(
        lab.get(EVENTS + f"/changes?startingTimestamp={iso_ms(events_ts[0] - 60_000)}"),
        400,
        None,
        "The provided timestamp",
    )


@pytest.mark.parametrize(
    "params", ["maxResults=-1", "maxResults=501", "maxResults=abc", "pageToken=garbage"]
)
def test_list_bad_paging(lab: SharingLab, params: str) -> None:
    assert_error(lab.get("/shares?" + params), 400, "INVALID_PARAMETER_VALUE")
    assert_error(lab.get("/shares/retail_share/schemas?" + params), 400)
    assert_error(lab.get("/shares/retail_share/all-tables?" + params), 400)


def test_page_token_is_bound_to_its_listing(lab: SharingLab) -> None:
    rest = DataSharingRestClient(DeltaSharingProfile.read_from_file(str(lab.profiles["alice"])))
    token = rest.list_schemas(Share(name="retail_share"), max_results=1).next_page_token
    assert token
    assert_error(lab.get(f"/shares/extra_share/schemas?maxResults=1&pageToken={token}"), 400)
    assert_error(lab.get(f"/shares?maxResults=1&pageToken={token}"), 400)


def test_unknown_route_is_json_404(lab: SharingLab) -> None:
    assert_error(lab.get("/nothing/here"), 404)


def test_caller_mistakes_are_never_5xx(lab: SharingLab) -> None:
    """The client retries 5xx for ~100 s: hostile input must get a 4xx at once."""
    weird = ["%00", "a" * 300, "..", "x%2Fy", "%F0%9F%92%A9", "a b"]
    for name in weird:
        for path in (
            f"/shares/{name}",
            f"/shares/retail_share/schemas/{name}/tables",
            f"/shares/retail_share/schemas/core/tables/{name}/metadata",
        ):
            resp = lab.get(path)
            assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text[:200])
    for body in (
        {"jsonPredicateHints": 5},
        {"limitHint": "lots"},
        {"version": 1.5},
        {"version": None},
        {"predicateHints": "x"},
        {"timestamp": 12},
        {"maxFiles": "x"},
        {"includeRefreshToken": "maybe"},
    ):
        resp = lab.post(SALES + "/query", body)
        assert resp.status_code < 500, (body, resp.status_code, resp.text[:200])
    resp = lab.post(SALES + "/query", data=b"\xff\xfe")
    assert 400 <= resp.status_code < 500


# -- the provider changes things under a running server: 4xx, never 5xx ---------------------------------


def _small_table(path: Any, rows: int = 3) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(path), pa.table({"id": pa.array(range(rows), pa.int64())}))


def test_vacuumed_files_and_cleaned_log_are_4xx(lab: SharingLab, tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    path = tmp_path / "vacuumed"
    _small_table(path)
    write_deltalake(str(path), pa.table({"id": pa.array([7], pa.int64())}), mode="overwrite")
    DeltaTable(str(path)).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    share, who = lab.share_table(path)
    base = f"/shares/{share}/schemas/s/tables/t"
    assert lab.query(share, "s", "t", recipient=who).files  # the current version is fine
    old = lab.post(base + "/query", {"version": 0}, recipient=who)
    if old.status_code == 200:  # URLs may be minted lazily: then the download must say so
        for line in old.text.splitlines()[2:]:
            url = __import__("json").loads(line)["file"]["url"]
            got = requests.get(url, timeout=10)
            assert 400 <= got.status_code < 500, got.status_code
            assert set(got.json()) >= {"errorCode", "message"}
    else:
        assert_error(old, 400, "RESOURCE_DOES_NOT_EXIST")

    # Log clean-up: a checkpoint at v1 and the v0 commit file gone.
    DeltaTable(str(path)).create_checkpoint()
    (path / "_delta_log" / f"{0:020d}.json").unlink()
    resp = lab.post(base + "/query", {"version": 0}, recipient=who)
    assert 400 <= resp.status_code < 500, resp.text
    assert lab.query(share, "s", "t", recipient=who).version == DeltaTable(str(path)).version()


def test_deleted_table_directory_is_4xx(lab: SharingLab, tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "doomed"
    _small_table(path)
    share, who = lab.share_table(path)
    base = f"/shares/{share}/schemas/s/tables/t"
    files = lab.query(share, "s", "t", recipient=who).files
    shutil.rmtree(path)
    for resp in (
        lab.post(base + "/query", {}, recipient=who),
        lab.get(base + "/metadata", recipient=who),
        lab.get(base + "/version", recipient=who),
        requests.get(files[0]["url"], timeout=10),
    ):
        assert 400 <= resp.status_code < 500, (resp.request.url, resp.status_code, resp.text[:200])


def test_catalog_changes_apply_to_running_server(lab: SharingLab, tmp_path: Path) -> None:
    path = tmp_path / "changing"
    _small_table(path)
    share, who = lab.share_table(path)
    base = f"/shares/{share}/schemas/s/tables/t"
    assert lab.get(base + "/version", recipient=who).status_code == 200
    lab.catalog.remove_table_from_share(share, "s.t")
    assert_error(lab.get(base + "/version", recipient=who), 404, "RESOURCE_DOES_NOT_EXIST")
    lab.catalog.drop_share(share)
    assert_error(lab.get(f"/shares/{share}", recipient=who), 404, "RESOURCE_DOES_NOT_EXIST")
    lab.catalog.drop_recipient(who)
    assert lab.get("/shares", recipient=who).status_code == 401


@pytest.mark.parametrize(
    "stamp",
    ["{iso}", "{offset}", "{space}"],
)
def test_timestamp_formats_accepted(lab: SharingLab, sales_ts: dict[int, int], stamp: str) -> None:
    import datetime as dt
    from urllib.parse import quote

    moment = dt.datetime.fromtimestamp(sales_ts[1] / 1000, tz=dt.UTC)
    forms = {
        "iso": iso_ms(sales_ts[1]),
        "offset": moment.astimezone(dt.timezone(dt.timedelta(hours=-8))).isoformat(
            timespec="milliseconds"
        ),
        "space": moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}",
    }
    value = stamp.format(**forms)
    resp = lab.get(SALES + f"/version?startingTimestamp={quote(value)}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Delta-Table-Version"] == "1"
    assert lab.query("retail_share", "core", "sales", {"timestamp": value}).version == 1


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/shares"),
        ("POST", "/shares"),
        ("GET", SALES + "/query"),
        ("PUT", SALES + "/query"),
    ],
)
def test_wrong_method_is_json_405(lab: SharingLab, method: str, path: str) -> None:
    resp = lab.session.request(method, lab.base + path, headers=lab.auth("alice"), timeout=10)
    assert_error(resp, 405)
