"""Workshop mode over TLS in a classroom of network namespaces (one instructor host, three attendee hosts).

The instructor runs what ``./run-demo.sh --lan`` runs (the provider on every interface with ``--tls`` and
an https public URL, JupyterLab on 127.0.0.1); each attendee host has only an activation link and the CA
fingerprint. Checked: every attendee reads the share over TLS with the official client in parquet and delta
format (and its change data feed); plain HTTP is not served; the instructor's JupyterLab cannot be reached
from an attendee host; a wrong CA and a tampered certificate fail at once with a sentence saying so.

Skipped (with the reason) when not root or ``ip netns`` does not work here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from helpers.catalog import open_catalog
from helpers.catalog.workshop import BoardRow, WorkshopStore
from tests.support import REPO
from tests.workshop import minilab
from tests.workshop.netns import Classroom, netns_unavailable

pytestmark = pytest.mark.slow

PORT = 8443
JUPYTER_PORT = 8890
NAMES = ["ada", "bo", "cy"]


@dataclass
class Room:
    net: Classroom
    home: Path
    fingerprint: str
    codes: dict[str, str]
    tmp: Path

    @property
    def base(self) -> str:
        return f"https://{self.net.instructor_ip}:{PORT}"

    def link(self, name: str) -> str:
        return f"{self.base}/delta-sharing/activation/{self.codes[name]}"


def _sharelab(net: Classroom, ns: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SHARELAB_HOME=str(home), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "helpers", "--home", str(home), *args]
    return subprocess.run(
        net.exec_argv(ns, argv), capture_output=True, text=True, env=env, cwd=REPO, timeout=180
    )


def probe(net: Classroom, ns: str, *args: str, home: Path) -> dict[str, object]:
    """Run :mod:`tests.workshop.attendee_probe` on host ``ns``; its JSON result."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    env.update(SHARELAB_HOME=str(home), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "tests.workshop.attendee_probe", *args]
    done = subprocess.run(
        net.exec_argv(ns, argv), capture_output=True, text=True, env=env, cwd=REPO, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("classroom")
    home = tmp / "instructor-home"
    home.mkdir()
    minilab.build(home)
    codes = minilab.add_attendees(home, NAMES)
    net = Classroom(3).open()
    try:
        # what ./run-demo.sh --lan runs (hostname -I inside the namespace is the instructor's address)
        public = f"https://{net.instructor_ip}:{PORT}"
        started = _sharelab(
            net, net.instructor, home, "start", "--host", "0.0.0.0", "--port", str(PORT),
            "--public-url", public, "--tls",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr + started.stdout
        assert "fingerprint" in started.stdout
        jup = _sharelab(
            net, net.instructor, home, "jupyter", "start", "--host", "127.0.0.1",
            "--port", str(JUPYTER_PORT),
        )  # fmt: skip
        assert jup.returncode == 0, jup.stderr + jup.stdout
        state = json.loads((home / "server" / "server.json").read_text())
        yield Room(net, home, state["tls"]["ca_fingerprint"], codes, tmp)
    finally:
        _sharelab(net, net.instructor, home, "jupyter", "stop")
        _sharelab(net, net.instructor, home, "stop")
        net.close()


def test_attendees_read_over_tls_in_both_formats(room: Room) -> None:
    t0 = time.perf_counter()
    procs = {}
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    for i, name in enumerate(NAMES):
        ahome = room.tmp / f"attendee-{name}"
        ahome.mkdir()
        argv = [
            sys.executable, "-m", "tests.workshop.attendee_probe", "read", room.link(name),
            room.fingerprint, str(ahome / "me.share"), minilab.TABLE,
        ]  # fmt: skip
        procs[name] = subprocess.Popen(
            room.net.exec_argv(room.net.attendees[i], argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=dict(env, SHARELAB_HOME=str(ahome)),
        )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        results[name] = json.loads(out.strip().splitlines()[-1])
    wall = time.perf_counter() - t0
    for name, r in results.items():
        assert r["endpoint"] == f"{room.base}/delta-sharing/", name
        assert r["parquet_rows"] == r["delta_rows"] == minilab.ROWS, (name, r)
        assert r["cdf_rows"] == r["cdf_delta_rows"] == minilab.ROWS, (name, r)
        assert r["parquet_sum"] == r["delta_sum"] == minilab.SUM_V
        # the CA was kept beside the profile, so a new kernel trusts it again
        assert (room.tmp / f"attendee-{name}" / "me.share.ca.pem").is_file()
    print(f"\n3 attendees activated and read in both formats in {wall:.1f} s: {results}")


def _board(home: Path, done: Callable[[dict[str, BoardRow]], bool]) -> dict[str, BoardRow]:
    """The board once ``done`` holds (the server writes its audit in batches), else after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        board = {r.name: r for r in WorkshopStore(open_catalog(home)).board()}
        if done(board) or time.monotonic() > deadline:
            return board
        time.sleep(0.3)


def test_the_board_counts_what_the_attendee_hosts_did(room: Room) -> None:
    board = _board(room.home, lambda b: all(n in b and b[n].tables_read for n in NAMES))
    assert set(NAMES) <= set(board)
    for name in NAMES:
        row = board[name]
        assert row.activated, name
        assert row.tables_read == (minilab.TABLE,), (name, row)
        # per host: metadata + query in two formats and two change feeds, over TLS
        assert row.requests >= 4 and row.last_request is not None, (name, row)
        assert row.errors == {401: 0, 403: 0, 404: 0}, (name, row)


def test_an_ip_access_list_admits_one_host_and_refuses_another(room: Room) -> None:
    from helpers.provider import Provider

    profile = room.tmp / "attendee-ada" / "me.share"
    assert profile.is_file(), "test_attendees_read_over_tls_in_both_formats activates ada first"
    a1, a2 = room.net.attendees[0], room.net.attendees[1]
    a1_ip, a2_ip = room.net.attendee_ip(0), room.net.attendee_ip(1)
    provider = Provider(room.home)
    provider.sql(f"ALTER RECIPIENT ada SET IP ACCESS LIST ('{a1_ip}/32')")
    try:
        ok = probe(room.net, a1, "load", str(profile), minilab.TABLE, home=room.tmp)
        assert ok == {"rows": minilab.ROWS}, ok
        refused = probe(room.net, a2, "load", str(profile), minilab.TABLE, home=room.tmp)
        assert refused["status"] == 403, refused
        assert a2_ip in str(refused["message"]), refused  # the message names the refused address
        audit = _audit_when(
            room.home, lambda f: ((f.client_address == a2_ip) & (f.status_code == 403)).any()
        )
        mine = audit[audit["recipient"].str.lower() == "ada"]
        assert ((mine.client_address == a2_ip) & (mine.status_code == 403)).any()
        assert not ((mine.client_address == a1_ip) & (mine.status_code >= 400)).any()
        board = _board(room.home, lambda b: b["ada"].errors[403] >= 1)
        assert board["ada"].errors[403] >= 1  # and the instructor sees it
    finally:
        provider.sql("ALTER RECIPIENT ada UNSET IP ACCESS LIST")


def _audit_when(home: Path, done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + 20
    while True:
        frame = open_catalog(home).audit_frame()
        if done(frame) or time.monotonic() > deadline:
            return frame
        time.sleep(0.3)


def test_activation_with_a_wrong_fingerprint_is_refused(room: Room) -> None:
    ahome = room.tmp / "attendee-wrongfp"
    ahome.mkdir()
    argv = [
        sys.executable, "-m", "tests.workshop.attendee_probe", "read", room.link("cy"),
        "AB" * 32, str(ahome / "me.share"), minilab.TABLE,
    ]  # fmt: skip
    done = subprocess.run(
        room.net.exec_argv(room.net.attendees[2], argv),
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "not the one you were given" in done.stderr
    assert not (ahome / "me.share").exists()


def test_plain_http_is_not_served(room: Room) -> None:
    host = room.net.instructor_ip
    r = probe(
        room.net, room.net.attendees[0], "plain", f"http://{host}:{PORT}/health", home=room.tmp
    )
    assert r["served"] is False, r
    for port in (80, 8080):  # nothing else listens on the classroom network
        assert probe(room.net, room.net.attendees[0], "tcp", host, str(port), home=room.tmp) == {
            "connected": False,
            "error": "ConnectionRefusedError",
        }


def test_instructor_jupyterlab_is_not_reachable_from_an_attendee(room: Room) -> None:
    host = room.net.instructor_ip
    r = probe(room.net, room.net.attendees[1], "tcp", host, str(JUPYTER_PORT), home=room.tmp)
    assert r == {"connected": False, "error": "ConnectionRefusedError"}
    # ...while it runs and answers on the instructor's own loopback
    r = probe(room.net, room.net.instructor, "tcp", "127.0.0.1", str(JUPYTER_PORT), home=room.tmp)
    assert r == {"connected": True}
    # and the provider itself is reachable from the attendee host
    assert probe(room.net, room.net.attendees[1], "tcp", host, str(PORT), home=room.tmp) == {
        "connected": True
    }


def test_a_wrong_ca_fails_clearly(room: Room) -> None:
    from helpers.tls import prepare_tls

    other = prepare_tls(room.tmp / "impostor-home")  # another lab's CA
    assert other.ca is not None and other.fingerprint != room.fingerprint
    url = f"{room.base}/delta-sharing/"
    r = probe(room.net, room.net.attendees[2], "wrong-ca", url, str(other.ca), home=room.tmp)
    assert "is not accepted" in str(r["check_tls"]), r
    assert "CA you do not trust" in str(r["check_tls"]) or "not signed by a CA" in str(
        r["check_tls"]
    )
    assert "SSLError" in str(r["client"]) and "CERTIFICATE_VERIFY_FAILED" in str(r["client"]), r


def _tampered_copy(room: Room) -> tuple[Path, Path]:
    """The instructor's certificate chain with one byte of the leaf's signature flipped."""
    chain = x509.load_pem_x509_certificates((room.home / "tls" / "server.pem").read_bytes())
    der = bytearray(chain[0].public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    leaf = x509.load_der_x509_certificate(bytes(der))
    out = room.tmp / "tampered.pem"
    out.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + chain[1].public_bytes(serialization.Encoding.PEM)
    )
    return out, room.home / "tls" / "server.key"


def test_a_tampered_certificate_fails_clearly(room: Room) -> None:
    cert, key = _tampered_copy(room)
    other_home = room.tmp / "tampered-home"
    other_home.mkdir()
    port = PORT + 1
    started = _sharelab(
        room.net, room.net.instructor, other_home, "start", "--host", "0.0.0.0",
        "--port", str(port), "--cert", str(cert), "--key", str(key),
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        url = f"https://{room.net.instructor_ip}:{port}/"
        ca = str(room.home / "tls" / "ca.pem")  # the right CA: only the certificate is wrong
        r = probe(room.net, room.net.attendees[0], "handshake", url, ca, home=room.tmp)
        assert "signature is invalid: the certificate was tampered with" in str(r["check_tls"]), r
    finally:
        _sharelab(room.net, room.net.instructor, other_home, "stop")
