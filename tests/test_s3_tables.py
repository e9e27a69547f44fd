"""Tables on S3-compatible object storage, end to end against a local S3 emulator.

The emulator is `s3rver <https://www.npmjs.com/package/s3rver>`_ (Node), bound to 127.0.0.1: moto cannot be
installed next to the pinned python-dateutil 4 (every botocore requires ``python-dateutil<3``). s3rver
is installed once into ``~/.cache/sharelab/`` with npm; without node/npm the S3 tests skip with that
reason. s3rver enforces ``X-Amz-Expires`` on pre-signed URLs but does not verify SigV4 signatures, so the
signature itself is checked against AWS's published pre-signed URL example.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
import requests
from deltalake import DeltaTable, write_deltalake

from helpers.exceptions import NotADeltaTableError
from helpers.profiles import profile_dict
from helpers.provider import Provider
from helpers.storage.delta_log import DeltaLogError, ObjectStoreDeltaLog
from helpers.storage.s3 import S3Settings, presign_get
from tests.support import free_port

S3RVER_VERSION = "3.7.1"
BUCKET = "lab"
KEY, SECRET = "S3RVER", "S3RVER"  # s3rver's built-in credentials


# ------------------------------------------------------------------------------------------ emulator
def _s3rver_bin() -> tuple[Path | None, str]:
    """The s3rver executable (installed into the user cache on first use), or None and why not."""
    if not shutil.which("node"):
        return None, "node is not installed (the S3 emulator s3rver runs on Node.js)"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    prefix = cache / "sharelab" / f"s3rver-{S3RVER_VERSION}"
    exe = prefix / "node_modules" / ".bin" / "s3rver"
    if exe.exists():
        return exe, ""
    if not shutil.which("npm"):
        return None, "npm is not installed (needed once to install the S3 emulator s3rver)"
    prefix.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent"]
            + [f"s3rver@{S3RVER_VERSION}"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        err = done.stderr.strip()[-300:]
    except subprocess.TimeoutExpired:
        err = "npm install timed out (no registry access?)"
    if not exe.exists():
        return None, f"cannot install s3rver with npm: {err}"
    return exe, ""


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An s3rver on a free loopback port with the bucket ``lab``; its endpoint URL."""
    exe, why = _s3rver_bin()
    if exe is None:
        pytest.skip(why)
    port = free_port()
    data = tmp_path_factory.mktemp("s3rver")
    log = open(data.parent / f"s3rver-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(exe), "-d", str(data), "-a", "127.0.0.1", "-p", str(port)]
        + ["--configure-bucket", BUCKET, "--silent"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"s3rver did not start: {(data.parent / f's3rver-{port}.log').read_text()}"
                )
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The store settings in this process's environment (the server subprocess inherits them)."""
    env = {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _write_orders(uri: str, env: dict[str, str]) -> dict[str, str]:
    """A partitioned CDF table on the store: two writes and a delete (a commit with cdc files)."""
    opts = dict(env, AWS_S3_ALLOW_UNSAFE_RENAME="true")
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "region": ["EU", "US", "EU", "APAC"],
            "amount": [1.5, 2.5, None, 4.0],
            "ts": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"], utc=True
            ),
        }
    )
    write_deltalake(
        uri,
        df,
        partition_by=["region"],
        configuration={"delta.enableChangeDataFeed": "true"},
        storage_options=opts,
    )
    write_deltalake(uri, df.assign(id=df.id + 10), mode="append", storage_options=opts)
    DeltaTable(uri, storage_options=opts).delete("id = 2")
    return opts


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["id", "region", "amount", "ts"]
    out = df[cols].sort_values("id").reset_index(drop=True)
    out["ts"] = pd.to_datetime(out["ts"], utc=True).astype("datetime64[us, UTC]")
    return out


# ------------------------------------------------------------------------------------------ tests
def test_presigned_url_matches_aws_published_example() -> None:
    """The SigV4 query signature equals AWS's documented example (S3 API reference, query auth)."""
    settings = S3Settings("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    url = presign_get(
        settings,
        "examplebucket",
        "test.txt",
        expires_seconds=86400,
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_s3_table_is_shared_with_presigned_urls(
    lab_home: Path, s3_env: dict[str, str], server_factory
) -> None:
    """CREATE TABLE ... LOCATION 's3://...', share it, read it with the official client in both formats."""
    uri = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/sales/orders"
    opts = _write_orders(uri, s3_env)
    expected = _sorted(DeltaTable(uri, storage_options=opts).to_pandas())
    assert len(expected) == 7

    provider = Provider(lab_home)
    provider.sql(f"CREATE TABLE demo.s3.orders LOCATION '{uri}'")
    cat = provider.catalog
    assert cat.get_table("demo.s3.orders").location == uri
    cat.create_share("cloud")
    cat.add_table_to_share("cloud", "demo.s3.orders", history=True)
    cat.create_recipient("alice")
    cat.grant("cloud", "alice")

    server = server_factory(lab_home)
    profile = lab_home / "alice.share"
    profile.write_text(json.dumps(profile_dict(server.endpoint, cat.issue_token("alice"))))
    table_url = f"{profile}#cloud.s3.orders"

    for delta_format in (False, True):
        got = delta_sharing.load_as_pandas(table_url, use_delta_format=delta_format)
        pd.testing.assert_frame_equal(_sorted(got), expected, check_dtype=False)
    first = delta_sharing.load_as_pandas(
        table_url, version=0
    )  # time travel through the store's log
    assert sorted(first["id"]) == [1, 2, 3, 4]
    changes = delta_sharing.load_table_changes_as_pandas(table_url, starting_version=0)
    assert sorted(changes["_change_type"].unique()) == ["delete", "insert"]
    assert changes.loc[changes["_change_type"] == "delete", "id"].tolist() == [2]

    # the raw /query: every URL is the store's own pre-signed URL, expiring when the line says
    token = json.loads(profile.read_text())["bearerToken"]
    before = time.time()
    resp = requests.post(
        f"{server.endpoint}shares/cloud/schemas/s3/tables/orders/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    files = [json.loads(x)["file"] for x in resp.text.splitlines() if '"file"' in x]
    assert len(files) == 5  # 3 partitions x 2 writes, minus the file the delete of id=2 emptied
    fs = S3Settings.from_env().filesystem()
    root = uri.removeprefix("s3://")
    for f in files:
        parsed = urllib.parse.urlparse(f["url"])
        query = dict(urllib.parse.parse_qsl(parsed.query))
        assert f["url"].startswith(f"{s3_env['AWS_ENDPOINT_URL']}/{BUCKET}/")
        assert query["X-Amz-Signature"] and query["X-Amz-Expires"] == "3600"
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert f["expirationTimestamp"] == int(signed_at.timestamp() + 3600) * 1000
        assert before - 2 <= signed_at.timestamp() <= time.time() + 1
        body = requests.get(f["url"], timeout=10)
        assert body.status_code == 200
        key = urllib.parse.unquote(parsed.path).removeprefix(f"/{BUCKET}/")
        assert key.startswith(root.removeprefix(f"{BUCKET}/") + "/region=")
        with fs.open_input_stream(f"{BUCKET}/{key}") as fh:
            assert body.content == fh.read()

    # the store refuses an expired pre-signed URL of the same file
    key = urllib.parse.unquote(urllib.parse.urlparse(files[0]["url"]).path).split("/", 2)[2]
    stale = presign_get(
        S3Settings.from_env(),
        BUCKET,
        key,
        expires_seconds=60,
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    refused = requests.get(stale, timeout=10)
    assert refused.status_code == 403
    assert "expired" in refused.text.lower()

    # the server's own download route never serves an object-store table
    assert "/delta-sharing/files/" not in resp.text


def test_register_s3_location_without_delta_log_is_refused(
    lab_home: Path, s3_env: dict[str, str]
) -> None:
    """An s3:// path with no _delta_log is refused with a clear error and the catalog is unchanged."""
    provider = Provider(lab_home)
    uri = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/nothing"
    with pytest.raises(NotADeltaTableError, match="no _delta_log"):
        provider.catalog.register_table("demo.s3.nothing", uri)
    assert provider.catalog.list_tables() == []


def test_object_keys_stay_inside_the_table_prefix() -> None:
    """Log paths map to keys under the table's prefix; escaping paths are refused (no network needed)."""
    settings = S3Settings(KEY, SECRET, endpoint_url="http://127.0.0.1:9", allow_http=True)
    log = ObjectStoreDeltaLog("s3://lab/data/orders/", settings)
    assert log.object_key("region=EU/part%20one.parquet") == (
        "lab",
        "data/orders/region=EU/part one.parquet",
    )
    assert log.object_key("s3://lab/data/orders/x.parquet") == ("lab", "data/orders/x.parquet")
    for bad in (
        "../secret.parquet",
        "region=EU/../../x",
        "s3://other/data/orders/x",
        "s3://lab/data/x",
    ):
        with pytest.raises(DeltaLogError):
            log.object_key(bad)
