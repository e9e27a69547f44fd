"""Links nginx checks itself (``$SHARELAB_SECURE_LINK_PREFIX``, :mod:`helpers.server.securelink`).

One sharelab server behind nginx (Debian's package, the ``docker/nginx/`` template) on loopback: ``/query``
answers files under ``$SHARELAB_SECURE_LINK_ROOT`` as links nginx verifies (expiry + MD5 keyed by a secret
``sharelab secure-link-conf`` derives from the signing key) and serves with sendfile; the server never sees
those downloads. Files outside the root, and recipients with an IP access list, keep server-checked URLs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import delta_sharing
import pandas as pd
import pytest
import requests
from deltalake import write_deltalake

from helpers.catalog import Catalog
from helpers.catalog.views import view_store
from helpers.provider import Provider
from helpers.server.securelink import SecureLinks, link_secret
from tests.nginx import NGINX, render_nginx, start_nginx
from tests.support import RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.timeout(300)

PREFIX = "/_sharelab_link"


@dataclass
class Lab:
    home: Path
    server: RunningServer
    proxy: str  # nginx: http://127.0.0.1:PORT
    inside: Path  # $SHARELAB_SECURE_LINK_ROOT

    def token(self, recipient: str) -> str:
        return Catalog(self.home).issue_token(recipient).token

    def files(self, token: str, table: str = "t") -> list[dict[str, object]]:
        resp = requests.post(
            f"{self.proxy}/delta-sharing/shares/s/schemas/sch/tables/{table}/query",
            headers={"Authorization": f"Bearer {token}"},
            json={},
            timeout=20,
        )
        resp.raise_for_status()
        lines = [json.loads(x) for x in resp.text.splitlines() if x.strip()]
        return [x["file"] for x in lines if "file" in x]

    def profile(self, token: str) -> Path:
        path = self.home / f"{token[:8]}.share"
        body = {"shareCredentialsVersion": 1, "endpoint": f"{self.proxy}/delta-sharing/"}
        path.write_text(json.dumps({**body, "bearerToken": token}))
        return path

    def downloads_audited(self) -> int:
        frame = Catalog(self.home).audit_frame()
        return int((frame["action"] == "downloadFile").sum())


def _table(path: Path, files: int) -> None:
    for n in range(files):
        frame = pd.DataFrame({"id": range(n * 250, (n + 1) * 250), "v": [float(n)] * 250})
        write_deltalake(str(path), frame, mode="append")


def _cli(
    home: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """``sharelab --home HOME ARGS...`` with ``env`` added (and no replicas' key file)."""
    base = {k: v for k, v in os.environ.items() if k != "SHARELAB_SIGNING_KEY_FILE"}
    return subprocess.run(
        [sys.executable, "-m", "helpers", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **env},
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if NGINX is None:
        pytest.skip("nginx not found: install Debian's nginx-light (./run-demo.sh test does it)")
    root = tmp_path_factory.mktemp("links")
    home, inside = root / "home", root / "data"
    _table(inside / "t", 4)
    _table(root / "elsewhere" / "u", 2)  # outside the link root
    Provider(home).sql(
        f"CREATE TABLE lab.sch.t LOCATION '{inside / 't'}'; "
        f"CREATE TABLE lab.sch.u LOCATION '{root / 'elsewhere' / 'u'}'; CREATE SHARE s; "
        "ALTER SHARE s ADD TABLE lab.sch.t; ALTER SHARE s ADD TABLE lab.sch.u; "
        "CREATE RECIPIENT r; GRANT SELECT ON SHARE s TO RECIPIENT r; "
        "CREATE RECIPIENT fenced; GRANT SELECT ON SHARE s TO RECIPIENT fenced"
    )
    view_store(Catalog(home)).set_ip_access_list("fenced", ["127.0.0.1/32"])
    port = free_port()
    proxy = f"http://127.0.0.1:{port}"
    env = {
        "SHARELAB_SECURE_LINK_PREFIX": PREFIX,
        "SHARELAB_SECURE_LINK_ROOT": str(inside),
        "SHARELAB_URL_TTL_SECONDS": "600",  # a link outlives a revocation by at most this
    }
    server = start_server(home, extra=["--public-url", proxy], env=env)
    nginx = None
    try:
        prefix = root / "nginx"
        prefix.mkdir()
        made = _cli(home, "secure-link-conf", str(prefix / "secure_link.conf"))
        assert made.returncode == 0, made.stderr
        conf = render_nginx(prefix, port, [server.port], prefix / "secure_link.conf", str(inside))
        nginx = start_nginx(prefix, conf, proxy)
        yield Lab(home, server, proxy, inside)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        stop_server(server)


def _audit_settled(lab: Lab, before: int, timeout: float = 10.0) -> int:
    """The count of audited downloads once the server has written the rows it was handed."""
    deadline = time.monotonic() + timeout
    count = lab.downloads_audited()
    while time.monotonic() < deadline and count == before:
        time.sleep(0.2)
        count = lab.downloads_audited()
    return count


def test_the_official_client_reads_through_links_nginx_checks(lab: Lab) -> None:
    token = lab.token("r")
    files = lab.files(token)
    assert len(files) == 4
    assert all(str(f["url"]).startswith(f"{lab.proxy}{PREFIX}/") for f in files), files[0]
    before = lab.downloads_audited()
    frame = delta_sharing.load_as_pandas(f"{lab.profile(token)}#s.sch.t")
    assert sorted(frame["id"]) == list(range(1000))
    # the bytes came from nginx: the server audited no download (its /query rows are there)
    time.sleep(1.0)
    assert lab.downloads_audited() == before
    ranged = requests.get(str(files[0]["url"]), headers={"Range": "bytes=0-3"}, timeout=20)
    assert ranged.status_code == 206 and ranged.content == b"PAR1"


def test_a_forged_moved_or_expired_link_is_refused_with_a_json_error(lab: Lab) -> None:
    files = lab.files(lab.token("r"))
    url = str(files[0]["url"])
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    other = urlsplit(str(files[1]["url"])).path

    def refused(link: str) -> str:
        resp = requests.get(link, timeout=20)
        assert resp.status_code == 403, (resp.status_code, link)
        body = resp.json()
        assert body["errorCode"] == "PERMISSION_DENIED"
        return str(body["message"])

    forged = url.replace("md5=", "md5=A")
    assert "query the table again" in refused(forged)
    moved = f"{lab.proxy}{other}?md5={q['md5']}&expires={q['expires']}"  # another file's path
    assert "invalid" in refused(moved)
    later = url.replace(f"expires={q['expires']}", f"expires={int(q['expires']) + 60}")
    assert "invalid" in refused(later)  # the expiry is in the hash
    key = (lab.home / "server" / "secret.key").read_bytes()
    links = SecureLinks(PREFIX, str(lab.inside), link_secret(key))
    past = int(time.time()) - 5
    assert "expired" in refused(links.url(lab.proxy, unquote(parts.path), past))
    fresh = links.url(lab.proxy, unquote(parts.path), int(time.time()) + 60)
    assert requests.get(fresh, timeout=20).status_code == 200  # the test's signing is nginx's


def test_a_link_outlives_a_revocation_until_it_expires_as_documented(lab: Lab) -> None:
    cat = Catalog(lab.home)
    cat.create_recipient("short")
    cat.grant("s", "short")
    token = cat.issue_token("short").token
    files = lab.files(token)
    cat.revoke("s", "short")
    resp = requests.post(
        f"{lab.proxy}/delta-sharing/shares/s/schemas/sch/tables/t/query",
        headers={"Authorization": f"Bearer {token}"},
        json={},
        timeout=20,
    )
    assert resp.status_code in (403, 404)  # the protocol refuses at once...
    # ...but a link already handed out is nginx's to check: valid until its expiry (like a pre-signed URL)
    assert requests.get(str(files[0]["url"]), timeout=20).status_code == 200
    expires = int(parse_qs(urlsplit(str(files[0]["url"])).query)["expires"][0])
    reported = int(str(files[0]["expirationTimestamp"])) / 1000
    assert reported <= expires < reported + 1  # what the client is told is when nginx stops
    assert expires <= time.time() + 600 + 60  # SHARELAB_URL_TTL_SECONDS (rounded up to a minute)


def test_files_outside_the_root_and_fenced_recipients_keep_server_checked_urls(lab: Lab) -> None:
    token = lab.token("r")
    outside = lab.files(token, "u")
    assert outside and all("/delta-sharing/files/" in str(f["url"]) for f in outside)
    assert len(delta_sharing.load_as_pandas(f"{lab.profile(token)}#s.sch.u")) == 500
    fenced = lab.token("fenced")
    checked = lab.files(fenced)
    assert checked and all("/delta-sharing/files/" in str(f["url"]) for f in checked)
    before = lab.downloads_audited()
    assert len(delta_sharing.load_as_pandas(f"{lab.profile(fenced)}#s.sch.t")) == 1000
    assert _audit_settled(lab, before) > before  # the server checked (and audited) these downloads


def test_secure_link_conf_writes_the_secret_0600_or_says_what_is_missing(
    lab: Lab, tmp_path: Path
) -> None:
    out = _cli(lab.home, "secure-link-conf", str(tmp_path / "link.conf"))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "link.conf").read_text()
    key = (lab.home / "server" / "secret.key").read_bytes()
    assert text == f'set $sharelab_link_secret "{link_secret(key)}";\n'
    assert key.hex() not in text and stat.S_IMODE((tmp_path / "link.conf").stat().st_mode) == 0o600
    empty = _cli(tmp_path / "no-home", "secure-link-conf", str(tmp_path / "x.conf"))
    assert empty.returncode == 1 and "no signing key" in empty.stderr
    assert "Traceback" not in empty.stderr and not (tmp_path / "x.conf").exists()
    unwritable = _cli(lab.home, "secure-link-conf", str(tmp_path / "missing-dir" / "x.conf"))
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr


def test_a_bad_url_ttl_is_refused_before_the_server_starts(tmp_path: Path) -> None:
    out = _cli(tmp_path, "serve", "--port", "0", timeout=60, SHARELAB_URL_TTL_SECONDS="1h")
    assert out.returncode == 1 and "SHARELAB_URL_TTL_SECONDS='1h'" in out.stderr
    assert "whole number of seconds" in out.stderr and "Traceback" not in out.stderr


def test_a_public_url_with_a_path_is_in_the_link_and_its_hash() -> None:
    import base64
    import hashlib

    links = SecureLinks(PREFIX, "/srv/data", "s3cret")
    assert links.uri("/srv/data/t/part 1.parquet") == f"{PREFIX}/t/part 1.parquet"
    assert links.uri("/srv/other/x.parquet") is None and links.uri("/srv/data") is None
    url = links.url("https://lab.example/lab/", f"{PREFIX}/t/part 1.parquet", 1_900_000_000)
    parts = urlsplit(url)
    assert parts.netloc == "lab.example" and parts.path == f"/lab{PREFIX}/t/part%201.parquet"
    # what nginx computes: secure_link_md5 "$secure_link_expires$uri $sharelab_link_secret"
    expected = hashlib.md5(f"1900000000{unquote(parts.path)} s3cret".encode()).digest()
    query = parse_qs(parts.query)
    assert query["md5"] == [base64.urlsafe_b64encode(expected).rstrip(b"=").decode()]
    assert query["expires"] == ["1900000000"]


def test_links_without_a_public_url_are_refused_before_the_server_starts(tmp_path: Path) -> None:
    out = _cli(tmp_path, "serve", "--port", "0", timeout=60, SHARELAB_SECURE_LINK_PREFIX=PREFIX)
    assert out.returncode == 1 and "--public-url" in out.stderr and "Traceback" not in out.stderr
