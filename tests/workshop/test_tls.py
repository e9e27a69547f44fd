"""TLS on one machine: the lab CA and server certificate, ``sharelab start --tls``, the activation page and the
recipient's trust of the lab CA on every HTTP stack the official client uses (requests, fsspec/aiohttp for
parquet files, the Rust delta kernel for delta format), set up *after* those libraries were imported."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from helpers.exceptions import InvalidArgumentError
from helpers.tls import fingerprint, prepare_tls, spki_sha256_b64
from tests.support import REPO, free_port, sharelab
from tests.workshop import minilab

HOST_IP = "127.0.0.1"  # never "localhost": the official client turns verification off for that name


def _sans(path: Path) -> tuple[set[str], set[str]]:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    }


def test_lab_ca_is_made_once_and_the_leaf_covers_the_machine(tmp_path: Path) -> None:
    import socket

    first = prepare_tls(tmp_path, extra_names=["198.51.100.7", "lab.test"])
    assert first.ca is not None and first.renewed
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "tls" / "ca.key").stat().st_mode & 0o777) == "0o600"
    names, addrs = _sans(first.cert)
    assert {"localhost", socket.gethostname().lower(), "lab.test"} <= names
    assert {"127.0.0.1", "::1", "198.51.100.7"} <= addrs
    again = prepare_tls(tmp_path)
    assert again.fingerprint == first.fingerprint and not again.renewed
    # one more private address: same CA (it covers private ranges), a new leaf
    third = prepare_tls(tmp_path, extra_names=["10.9.8.7"])
    assert third.fingerprint == first.fingerprint and "10.9.8.7" in _sans(third.cert)[1]
    openssl = subprocess.run(
        ["openssl", "verify", "-CAfile", str(first.ca), str(first.cert)],
        capture_output=True,
        text=True,
    )
    assert openssl.returncode == 0, openssl.stdout + openssl.stderr
    ca = x509.load_pem_x509_certificate(first.ca.read_bytes())
    assert fingerprint(ca) == first.fingerprint and len(first.fingerprint) == 95
    assert len(spki_sha256_b64(ca)) == 44


def test_lab_ca_cannot_vouch_for_a_public_site(tmp_path: Path) -> None:
    files = prepare_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())  # type: ignore[union-attr]
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    permitted = {str(g.value) for g in nc.value.permitted_subtrees or []}
    assert "example.com" not in permitted and "8.8.8.8/32" not in permitted
    assert {"localhost", "10.0.0.0/8", "192.168.0.0/16"} <= permitted
    # a public address given explicitly makes a new CA that names exactly that address
    pub = prepare_tls(tmp_path, extra_names=["8.8.4.4"])
    assert pub.renewed and pub.fingerprint != files.fingerprint


def test_given_certificate_and_key_must_match(tmp_path: Path) -> None:
    a = prepare_tls(tmp_path / "a")
    b = prepare_tls(tmp_path / "b")
    given = prepare_tls(tmp_path / "c", cert=a.cert, key=a.key)
    assert given.ca is None and given.fingerprint == a.fingerprint  # the chain's root is the lab CA
    with pytest.raises(InvalidArgumentError, match="does not belong"):
        prepare_tls(tmp_path / "c", cert=a.cert, key=b.key)
    with pytest.raises(InvalidArgumentError, match="go together"):
        prepare_tls(tmp_path / "c", cert=a.cert)


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, object]]]:
    home = tmp_path_factory.mktemp("tls") / "home"
    home.mkdir()
    minilab.build(home)
    port = free_port()
    done = sharelab(home, "start", "--tls", "--port", str(port))
    assert done.returncode == 0, done.stderr
    assert "fingerprint" in done.stdout
    state = json.loads((home / "server" / "server.json").read_text())
    try:
        yield home, state
    finally:
        sharelab(home, "stop")


def test_start_tls_serves_https_only(tls_server: tuple[Path, dict[str, object]]) -> None:
    home, state = tls_server
    port = state["port"]
    assert str(state["endpoint"]).startswith(f"https://{HOST_IP}:{port}/")
    ca = str(home / "tls" / "ca.pem")
    assert requests.get(f"https://{HOST_IP}:{port}/health", verify=ca, timeout=5).ok
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{HOST_IP}:{port}/health", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{HOST_IP}:{port}/health", timeout=5)  # certifi alone: refused
    pem = requests.get(f"https://{HOST_IP}:{port}/lab-ca.pem", verify=ca, timeout=5).text
    assert pem == (home / "tls" / "ca.pem").read_text()
    status = sharelab(home, "status")
    assert "healthy" in status.stdout and "fingerprint" in status.stdout


def test_activation_page_shows_the_fingerprint_and_does_not_burn_the_link(
    tls_server: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    home, state = tls_server
    code = minilab.add_attendees(home, ["pat"])["pat"]
    link = f"https://{HOST_IP}:{state['port']}/delta-sharing/activation/{code}"
    fp = state["tls"]["ca_fingerprint"]  # type: ignore[index]
    ca = str(home / "tls" / "ca.pem")
    page = requests.get(link, headers={"Accept": "text/html"}, verify=ca, timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert fp in page.text and "activate_with_ca" in page.text and "/lab-ca.pem" in page.text
    page = requests.get(link, headers={"Accept": "text/html"}, verify=ca, timeout=5)
    assert page.status_code == 200  # still not redeemed
    # the attendee's one step, in a fresh process that imported the client first
    out = tmp_path / "me.share"
    script = (
        "import sys, delta_sharing, aiohttp, fsspec.implementations.http\n"
        "from helpers import recipient\n"
        "p = recipient.activate_with_ca(sys.argv[1], sys.argv[2], sys.argv[3])\n"
        "u = f'{p}#demo_share.s.t'\n"
        "print(len(delta_sharing.load_as_pandas(u)),"
        " len(delta_sharing.load_as_pandas(u, use_delta_format=True)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    done = subprocess.run(
        [sys.executable, "-c", script, link, str(out), fp],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["100", "100"]
    assert (tmp_path / "me.share.ca.pem").read_text() == (home / "tls" / "ca.pem").read_text()
    # a new kernel: load_profile trusts the CA kept beside the profile, no call needed
    script = (
        "import sys\nfrom helpers import recipient\n"
        "print(len(recipient.load(sys.argv[1], 'demo_share.s.t')),"
        " len(recipient.load(sys.argv[1], 'demo_share.s.t', use_delta_format=True)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["100", "100"]


def test_without_tls_there_is_no_lab_ca(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from helpers.server.app import create_app

    home = tmp_path / "home"
    home.mkdir()
    with TestClient(create_app(home)) as client:
        assert client.get("/lab-ca.pem").status_code == 404


def test_check_tls_names_the_problem(tls_server: tuple[Path, dict[str, object]]) -> None:
    from helpers.recipient import TlsError, check_tls

    _home, state = tls_server
    ctx_env = os.environ.get("SSL_CERT_FILE")
    try:
        os.environ.pop("SSL_CERT_FILE", None)
        with pytest.raises(TlsError, match="do not trust"):
            check_tls(f"https://{HOST_IP}:{state['port']}/")
    finally:
        if ctx_env is not None:
            os.environ["SSL_CERT_FILE"] = ctx_env
    assert isinstance(ssl.get_default_verify_paths().cafile, str | type(None))


def test_run_demo_lan_uses_tls_and_keeps_jupyter_on_loopback(tmp_path: Path) -> None:
    """``open_local`` of run-demo.sh with LAN=1, the Python stubbed out: the exact commands it runs."""
    log = tmp_path / "calls"
    stub = tmp_path / "py"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    stub.chmod(0o755)
    body = subprocess.run(
        ["sed", "-n", "/^open_local()/,/^}/p", str(REPO / "run-demo.sh")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    script = f"ensure_venv() {{ :; }}\nPY={stub}\nROOT={REPO}\n{body}\nLAN=1 open_local\n"
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, timeout=30)
    start, jupyter = log.read_text().splitlines()
    assert "start --host 0.0.0.0" in start and start.endswith("--tls")
    assert "--public-url https://" in start
    assert jupyter.startswith("-m helpers jupyter start --host 127.0.0.1")


def test_sharelab_profile_keeps_the_lab_ca_beside_the_profile(
    tls_server: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    home, _state = tls_server
    minilab.add_attendees(home, ["quin"])
    out = tmp_path / "quin.share"
    done = sharelab(home, "profile", "quin", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["endpoint"].startswith("https://")
    assert (tmp_path / "quin.share.ca.pem").read_text() == (home / "tls" / "ca.pem").read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    script = "import sys\nfrom helpers import recipient\nprint(len(recipient.load(sys.argv[1], 'demo_share.s.t')))\n"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "100"


def test_stop_is_not_held_by_an_idle_tls_client(tmp_path: Path) -> None:
    """A keep-alive TLS client that never reads again (a kernel's pooled connection) cannot answer the
    server's close_notify: the server still stops by itself, its audit journal closed, not SIGKILLed."""
    import socket
    import time

    home = tmp_path / "home"
    home.mkdir()
    minilab.build(home)
    port = free_port()
    done = sharelab(home, "start", "--tls", "--port", str(port))
    assert done.returncode == 0, done.stderr
    pid = json.loads((home / "server" / "server.json").read_text())["pid"]
    stopped = None
    context = ssl.create_default_context(cafile=str(home / "tls" / "ca.pem"))
    raw = socket.create_connection((HOST_IP, port), timeout=10)
    idle = context.wrap_socket(raw, server_hostname=HOST_IP)
    try:
        idle.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST_IP}:{port}\r\n\r\n".encode())
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        stopped = sharelab(home, "stop")
        took = time.monotonic() - t0
    finally:
        idle.close()
        if stopped is None:  # the test failed before its stop: stop what it started
            sharelab(home, "stop")
    assert stopped.returncode == 0, stopped.stderr
    log = (home / "server" / "server.log").read_text()
    assert f"Finished server process [{pid}]" in log, (took, log[-2000:])
    assert not list((home / "server").glob("audit-*.journal")), "the journal of a killed server"
