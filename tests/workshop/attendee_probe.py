"""What an attendee host does in the namespace tests, as a command (``python -m tests.workshop.attendee_probe``).

It runs inside an attendee's network namespace with nothing but what an attendee has: an activation link,
the CA fingerprint read out by the instructor, and the recipient helpers. Each subcommand prints one JSON
object on stdout.

- ``read LINK FINGERPRINT OUT TABLE``: the one step (check + trust the lab CA, redeem the link), then read
  ``TABLE`` with the official client in parquet and delta format, and its change data feed;
- ``plain URL``: a plain-HTTP request (must fail: the provider serves TLS only);
- ``tcp HOST PORT``: can a TCP connection be made at all;
- ``wrong-ca URL CAFILE``: trust another CA only, then handshake and ask the official client;
- ``handshake URL CAFILE``: trust ``CAFILE``, one handshake (the tampered-certificate case);
- ``load PROFILE TABLE``: trust the CA kept beside ``PROFILE``, read ``TABLE`` with the official client:
  the rows, or the HTTP status and message that refused it (the IP access list case).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any


def _read(link: str, fingerprint: str, out: str, table: str) -> dict[str, Any]:
    import delta_sharing

    from helpers import recipient

    t0 = time.perf_counter()
    profile = recipient.activate_with_ca(link, out, fingerprint)
    activated = time.perf_counter() - t0
    url = f"{profile}#{table}"
    t0 = time.perf_counter()
    parquet = delta_sharing.load_as_pandas(url)
    delta = delta_sharing.load_as_pandas(url, use_delta_format=True)
    cdf = delta_sharing.load_table_changes_as_pandas(url, starting_version=0)
    cdf_delta = delta_sharing.load_table_changes_as_pandas(
        url, starting_version=0, use_delta_format=True
    )
    endpoint = json.loads(open(profile).read())["endpoint"]  # noqa: SIM115
    return {
        "endpoint": endpoint,
        "parquet_rows": len(parquet),
        "delta_rows": len(delta),
        "cdf_rows": len(cdf),
        "cdf_delta_rows": len(cdf_delta),
        "parquet_sum": float(parquet["v"].sum()),
        "delta_sum": float(delta["v"].sum()),
        "activate_s": round(activated, 3),
        "read_s": round(time.perf_counter() - t0, 3),
    }


def _plain(url: str) -> dict[str, Any]:
    import requests

    try:
        resp = requests.get(url, timeout=5)
    except requests.RequestException as exc:
        return {"served": False, "error": type(exc).__name__}
    return {"served": True, "status": resp.status_code}


def _tcp(host: str, port: str) -> dict[str, Any]:
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return {"connected": True}
    except OSError as exc:
        return {"connected": False, "error": type(exc).__name__}


def _wrong_ca(url: str, cafile: str) -> dict[str, Any]:
    from delta_sharing.protocol import DeltaSharingProfile
    from delta_sharing.rest_client import DataSharingRestClient

    from helpers import recipient

    recipient.trust_ca(cafile)
    result: dict[str, Any] = {}
    try:
        recipient.check_tls(url)
        result["check_tls"] = "ok"
    except recipient.TlsError as exc:
        result["check_tls"] = str(exc)
    profile = DeltaSharingProfile(1, url, "dss_not_a_real_token")
    try:
        DataSharingRestClient(profile, num_retries=0).list_shares()
        result["client"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the error is the result
        result["client"] = f"{type(exc).__name__}: {exc}"
    return result


def _handshake(url: str, cafile: str) -> dict[str, Any]:
    from helpers import recipient

    recipient.trust_ca(cafile)
    try:
        return {"check_tls": recipient.check_tls(url)}
    except recipient.TlsError as exc:
        return {"check_tls": str(exc)}


def _load(profile: str, table: str) -> dict[str, Any]:
    import delta_sharing
    import requests

    from helpers import recipient

    recipient.trust_ca(f"{profile}.ca.pem")
    try:
        return {"rows": len(delta_sharing.load_as_pandas(f"{profile}#{table}"))}
    except requests.HTTPError as exc:
        resp = exc.response
        return {"status": resp.status_code if resp is not None else None, "message": str(exc)}


def main(argv: list[str]) -> int:
    commands = {"read": _read, "plain": _plain, "tcp": _tcp, "wrong-ca": _wrong_ca}
    commands["handshake"] = _handshake
    commands["load"] = _load
    print(json.dumps(commands[argv[0]](*argv[1:])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
