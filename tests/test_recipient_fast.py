"""The lean loader (:func:`helpers.recipient.fast_load`) against a real server: the same rows and types as
the official client, partition columns included, with one ``/query`` and one GET per file; limits, empty
tables, columns added by a later commit, predicate hints, clear errors and a lab CA over TLS."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import delta_sharing
import pandas as pd
import pyarrow as pa
import pytest
import requests
from deltalake import DeltaTable, write_deltalake

from helpers.catalog import open_catalog
from helpers.provider import Provider
from helpers.recipient import fast_load, fast_load_arrow
from tests.support import REPO, free_port, sharelab, start_server, stop_server
from tests.workshop import minilab


def _orders(table: Path) -> None:
    for n in range(3):
        frame = pd.DataFrame(
            {
                "id": range(n * 100, (n + 1) * 100),
                "amount": [float(i) / 3 for i in range(100)],
                "region": ["eu" if i % 2 else "us" for i in range(100)],
            }
        )
        write_deltalake(str(table), frame, partition_by=["region"], mode="append")


def _evolved(table: Path) -> None:
    """An int partition column with a null value, and a column only the last commit has."""
    first = pd.DataFrame({"id": [1, 2, 3], "year": pd.array([2020, None, 2020], dtype="Int64")})
    write_deltalake(str(table), first, partition_by=["year"])
    later = pd.DataFrame({"id": [4], "year": [2021], "note": ["new"]})
    write_deltalake(str(table), later, partition_by=["year"], mode="append", schema_mode="merge")


def _empty(table: Path) -> None:
    write_deltalake(str(table), pd.DataFrame({"id": [1, 2], "name": ["a", "b"]}))
    DeltaTable(str(table)).delete()  # a version with no files at all


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One server for the module: ``s.sales.orders`` (partitioned, 3 commits), ``s.sales.evolved`` and
    ``s.sales.empty``; yields the recipient's profile file."""
    root = tmp_path_factory.mktemp("fast")
    home = root / "home"
    home.mkdir()
    sql = ["CREATE SHARE s"]
    for name, build in (("orders", _orders), ("evolved", _evolved), ("empty", _empty)):
        build(root / name)
        sql += [
            f"CREATE TABLE shop.sales.{name} LOCATION '{root / name}'",
            f"ALTER SHARE s ADD TABLE shop.sales.{name} WITH HISTORY",
        ]
    sql += ["CREATE RECIPIENT r", "GRANT SELECT ON SHARE s TO RECIPIENT r"]
    Provider(home).sql(";".join(sql))
    token = open_catalog(home).issue_token("r").token
    server = start_server(home)
    profile = root / "r.share"
    profile.write_text(
        json.dumps(
            {"shareCredentialsVersion": 1, "endpoint": server.endpoint, "bearerToken": token}
        )
    )
    yield profile
    stop_server(server)


@pytest.fixture
def shared(endpoint: Path) -> str:
    return f"{endpoint}#s.sales.orders"


def test_fast_load_equals_the_official_client(shared: str) -> None:
    ours = fast_load(shared).sort_values("id", ignore_index=True)
    theirs = delta_sharing.load_as_pandas(shared).sort_values("id", ignore_index=True)
    assert list(ours.columns) == list(theirs.columns) == ["id", "amount", "region"]
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    assert len(ours) == 300 and set(ours["region"]) == {"eu", "us"}
    old = fast_load_arrow(shared, version=0)
    assert old.num_rows == 100


def test_the_frame_is_the_callers_to_change(shared: str) -> None:
    frame = fast_load(shared)
    frame.loc[0, "amount"] = -1.0  # read-only zero-copy columns would refuse this
    frame.iloc[1, 0] = -2
    assert frame["amount"].iloc[0] == -1.0 and frame["id"].iloc[1] == -2


def test_limit_cuts_the_rows_as_the_official_client_does(shared: str) -> None:
    some = fast_load(shared, limit=70)
    assert len(some) == 70 and len(delta_sharing.load_as_pandas(shared, limit=70)) == 70
    none = fast_load_arrow(shared, limit=0)
    assert none.num_rows == 0 and none.column_names == ["id", "amount", "region"]
    with pytest.raises(ValueError, match="non-negative int"):
        fast_load(shared, limit=-1)


def test_empty_table_keeps_its_columns_and_types(endpoint: Path) -> None:
    table = fast_load_arrow(f"{endpoint}#s.sales.empty")
    assert table.num_rows == 0
    assert table.schema == pa.schema([("id", pa.int64()), ("name", pa.string())])
    assert fast_load_arrow(f"{endpoint}#s.sales.empty", version=0).num_rows == 2


def test_typed_partitions_nulls_and_columns_added_later(endpoint: Path) -> None:
    url = f"{endpoint}#s.sales.evolved"
    table = fast_load_arrow(url).sort_by("id")
    assert table.column_names == ["id", "year", "note"]
    assert table.schema.field("year").type == pa.int64()
    assert table.column("year").to_pylist() == [2020, None, 2020, 2021]
    assert table.column("note").to_pylist() == [None, None, None, "new"]
    ours = fast_load(url).sort_values("id", ignore_index=True)
    theirs = delta_sharing.load_as_pandas(url).sort_values("id", ignore_index=True)
    assert ours["note"].tolist()[-1] == theirs["note"].tolist()[-1] == "new"
    assert ours["year"].fillna(0).tolist() == theirs["year"].fillna(0).tolist()
    # version 0 had no "note" at all; the latest schema is not forced on an old version
    assert fast_load_arrow(url, version=0).column_names == ["id", "year"]


def test_predicate_hints_let_the_server_skip_files(shared: str) -> None:
    eu = {
        "op": "equal",
        "children": [
            {"op": "column", "name": "region", "valueType": "string"},
            {"op": "literal", "value": "eu", "valueType": "string"},
        ],
    }
    table = fast_load_arrow(shared, json_predicate_hints=eu)
    assert set(table.column("region").to_pylist()) == {"eu"} and table.num_rows == 150
    assert fast_load_arrow(shared, json_predicate_hints=json.dumps(eu)).num_rows == 150


def test_fast_load_bad_url_is_a_clear_error(shared: str) -> None:
    with pytest.raises(ValueError, match="<profile file>#<share>.<schema>.<table>"):
        fast_load(shared.split("#")[0])


def test_refusals_and_a_stopped_server_are_clear_errors(endpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(requests.HTTPError, match="404 from .*/query: ") as missing:
        fast_load(f"{endpoint}#s.sales.nope")
    assert missing.value.response is not None and missing.value.response.status_code == 404
    bad = tmp_path / "bad.share"
    bad.write_text(json.dumps({**json.loads(endpoint.read_text()), "bearerToken": "wrong"}))
    with pytest.raises(requests.HTTPError, match="401") as refused:
        fast_load(f"{bad}#s.sales.orders")
    assert "Traceback" not in str(refused.value)
    gone = tmp_path / "gone.share"
    gone.write_text(
        json.dumps(
            {
                **json.loads(endpoint.read_text()),
                "endpoint": f"http://127.0.0.1:{free_port()}/delta-sharing/",
            }
        )
    )
    with pytest.raises(requests.ConnectionError, match="is the provider's server running"):
        fast_load(f"{gone}#s.sales.orders")


def test_mount_with_the_lean_loader(shared: str) -> None:
    from helpers.recipient import mount, mounted_tables

    con = mount(shared.split("#")[0], fast=True)
    assert con.execute("SELECT count(*), sum(id) FROM s.sales.orders").fetchone() == (
        300,
        sum(range(300)),
    )
    assert con.execute("SELECT count(*) FROM s.sales.evolved").fetchone() == (4,)
    assert mounted_tables(con)["rows"].tolist() == [0, 4, 300]


def test_tls_with_the_lab_ca_beside_the_profile(tmp_path: Path) -> None:
    """Over HTTPS the loader verifies the server against the lab CA kept beside the profile, and
    without it refuses with the fix in the message (a new process: trusting a CA changes its env)."""
    home = tmp_path / "home"
    home.mkdir()
    minilab.build(home)
    token = minilab.recipient_token(home, "pat")
    done = sharelab(home, "start", "--tls", "--port", str(free_port()))
    assert done.returncode == 0, done.stderr
    try:
        state = json.loads((home / "server" / "server.json").read_text())
        assert str(state["endpoint"]).startswith("https://127.0.0.1:")
        profile = tmp_path / "pat.share"
        profile.write_text(
            json.dumps(
                {"shareCredentialsVersion": 1, "endpoint": state["endpoint"], "bearerToken": token}
            )
        )
        script = (
            "import sys\nfrom helpers.recipient import fast_load\n"
            "try:\n    print(len(fast_load(sys.argv[1] + '#demo_share.s.t')))\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
        )

        def run() -> str:
            env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
            return subprocess.run(
                [sys.executable, "-c", script, str(profile)],
                capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
            ).stdout.strip()  # fmt: skip

        refused = run()
        assert refused.startswith("SSLError") and "activate_with_ca" in refused, refused
        (tmp_path / "pat.share.ca.pem").write_text((home / "tls" / "ca.pem").read_text())
        assert run() == str(minilab.ROWS)
    finally:
        sharelab(home, "stop")


class _FakeSharing:
    """A minimal Delta Sharing server on loopback: ``/query`` lists ``files`` (in pages of ``page``
    files, then an optional ``errorMessage``) and the file route answers 200 with the whole file (no
    Range support) or, with ``bad_range``, a 206 of the wrong bytes. It counts the GETs of files."""

    def __init__(self, files: list[pa.Table], page: int = 100) -> None:
        import io

        import pyarrow.parquet as pq

        self.blobs = []
        for table in files:
            out = io.BytesIO()
            pq.write_table(table, out)
            self.blobs.append(out.getvalue())
        self.schema = files[0].schema
        self.page, self.gets, self.bad_range, self.error = page, 0, False, ""
        self.port = free_port()

    def lines(self, start: int) -> list[dict[str, object]]:
        kinds = {pa.int64(): "long", pa.string(): "string", pa.float64(): "double"}
        fields = [
            {"name": f.name, "type": kinds[f.type], "nullable": True, "metadata": {}}
            for f in self.schema
        ]
        head: list[dict[str, object]] = [
            {"protocol": {"minReaderVersion": 1}},
            {
                "metaData": {
                    "id": "t",
                    "format": {"provider": "parquet"},
                    "schemaString": json.dumps({"type": "struct", "fields": fields}),
                    "partitionColumns": [],
                }
            },
        ]
        out = head if start == 0 else []
        stop = min(len(self.blobs), start + self.page)
        for i in range(start, stop):
            stats = json.dumps({"numRecords": 10})
            url = f"http://127.0.0.1:{self.port}/files/{i}?sig=secret"
            out.append(
                {"file": {"url": url, "id": str(i), "size": len(self.blobs[i]), "stats": stats}}
            )
        end: dict[str, object] = {}
        if stop < len(self.blobs):
            end["nextPageToken"] = str(stop)
        if self.error and stop == len(self.blobs):
            end["errorMessage"] = self.error
        return [*out, {"endStreamAction": end}]

    def __enter__(self) -> _FakeSharing:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, body: bytes, extra: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **extra}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                lines = fake.lines(int(body.get("pageToken") or 0))
                text = "".join(json.dumps(line) + "\n" for line in lines).encode()
                self.answer(200, text, {"Content-Type": "application/x-ndjson"})

            def do_GET(self) -> None:
                fake.gets += 1
                blob = fake.blobs[int(self.path.split("/")[2].split("?")[0])]
                if fake.bad_range:
                    self.answer(206, blob[:10], {"Content-Range": f"bytes 0-9/{len(blob) + 5}"})
                else:
                    self.answer(200, blob, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def profile(self, path: Path) -> str:
        endpoint = f"http://127.0.0.1:{self.port}/"
        body = {"shareCredentialsVersion": 1, "endpoint": endpoint, "bearerToken": "t"}
        path.write_text(json.dumps(body))
        return f"{path}#s.sch.t"


def _tables(n: int) -> list[pa.Table]:
    return [
        pa.table({"id": pa.array(range(i * 10, i * 10 + 10), pa.int64()), "v": ["x"] * 10})
        for i in range(n)
    ]


def test_pages_whole_file_answers_and_only_the_files_a_limit_needs(tmp_path: Path) -> None:
    with _FakeSharing(_tables(7), page=3) as fake:
        url = fake.profile(tmp_path / "fake.share")
        table = fast_load_arrow(url)  # three pages; 200 answers to ranged GETs
        assert table.column("id").to_pylist() == list(range(70)) and fake.gets == 7
        fake.gets = 0
        assert fast_load_arrow(url, limit=25).column("id").to_pylist() == list(range(25))
        assert fake.gets == 3  # 10 rows a file by the stats: three files cover 25 rows
        fake.gets = 0
        assert fast_load_arrow(url, limit=0).num_rows == 0 and fake.gets == 0


def test_a_wrong_range_or_a_failed_listing_is_a_clear_error(tmp_path: Path) -> None:
    with _FakeSharing(_tables(2)) as fake:
        url = fake.profile(tmp_path / "fake.share")
        fake.bad_range = True
        with pytest.raises(requests.HTTPError, match="answered a range of bytes 0-9/") as bad:
            fast_load(url)
        assert "secret" not in str(bad.value)  # a URL's signature never shows in a message
        fake.bad_range, fake.error = False, "the table's log could not be read"
        with pytest.raises(requests.HTTPError, match="stopped the file list: the table's log"):
            fast_load(url)
