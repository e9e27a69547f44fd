"""Trusting a workshop's lab CA on the recipient side, without ever turning certificate checks off.

The official client reaches the server on three HTTP stacks, and each finds its CA certificates its own way
(checked against a real private CA in ``tests/workshop/test_tls.py``):

- API calls: ``requests``, which reads ``REQUESTS_CA_BUNDLE`` on every request;
- parquet-format file downloads: fsspec's HTTP filesystem over aiohttp, whose default SSL context is built
  once when aiohttp is imported (``SSL_CERT_FILE`` is too late after that), so the context is also handed
  to fsspec through ``fsspec.config.conf["https"]["ssl"]``;
- delta-format reads: the Rust delta-kernel wrapper (reqwest + rustls-native-certs), which reads
  ``SSL_CERT_FILE`` each time it builds a client.

:func:`trust_ca` covers all three with one bundle (the roots trusted before, i.e. a bundle the environment
already names or else certifi's, + the lab CA, so other HTTPS sites keep working). :func:`fetch_lab_ca` gets the CA from the provider (``GET /lab-ca.pem``, the one unverified
request) and accepts it only when its SHA-256 fingerprint is the one the instructor read out.
:func:`activate_with_ca` is the attendee's one step: fetch and check the CA, keep it next to the profile
(``<profile>.ca.pem``), trust it, then redeem the activation link over verified TLS.

Trap: the official client turns verification *off* for an endpoint whose host is ``localhost``; workshop
profiles carry the machine's address or name, never ``localhost``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from helpers.exceptions import InvalidArgumentError, SharelabError

__all__ = [
    "CA_ROUTE",
    "TlsError",
    "ca_fingerprint",
    "ca_path_for",
    "check_tls",
    "fetch_lab_ca",
    "trust_ca",
    "trust_env",
    "trust_profile",
    "write_bundle",
]

#: Where the provider serves its lab CA certificate (public: a certificate is not a secret).
CA_ROUTE = "/lab-ca.pem"
_TRUSTED: dict[str, str] = {}  # fingerprint -> PEM of every CA trusted in this process
_BUNDLE: Path | None = None


class TlsError(SharelabError):
    """A TLS problem: an untrusted or tampered certificate, a fingerprint that does not match."""


# ======================================================================================== fingerprints
def _der(pem: str) -> bytes:
    try:
        return ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    except ValueError as exc:
        raise InvalidArgumentError(f"not a PEM certificate ({exc})") from None


def _first_pem(text: str) -> str:
    end = "-----END CERTIFICATE-----"
    start = text.find("-----BEGIN CERTIFICATE-----")
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise InvalidArgumentError(
            "no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"
        )
    return text[start : stop + len(end)] + "\n"


def ca_fingerprint(pem: str) -> str:
    """SHA-256 of a PEM certificate's DER as ``AB:CD:...`` (what ``sharelab start --tls`` prints)."""
    digest = hashlib.sha256(_der(_first_pem(pem))).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _norm(fp: str) -> str:
    return "".join(c for c in fp.upper() if c in "0123456789ABCDEF")


# ======================================================================================== fetch
def _origin(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    if u.scheme != "https" or not u.hostname:
        raise InvalidArgumentError(f"{url!r} is not an https:// URL of the provider")
    return f"https://{u.netloc}"


def fetch_lab_ca(url: str, fingerprint: str, *, timeout: float = 10.0) -> str:
    """The provider's lab CA (PEM), accepted only when its fingerprint is ``fingerprint``.

    This is the one request made without verifying the server: what it returns is trusted only because
    its SHA-256 matches the fingerprint the instructor gave out, which an impostor cannot forge.

    :param url: any https URL of the provider (its endpoint, an activation link...).
    :param fingerprint: the CA's SHA-256 fingerprint (``AB:CD:...``; case and separators do not matter).
    :raises TlsError: the fingerprint does not match (wrong server, or someone in between).
    """
    if len(_norm(fingerprint)) != 64:
        raise InvalidArgumentError(
            f"{fingerprint!r} is not a SHA-256 fingerprint (64 hex digits, e.g. AB:CD:...)"
        )
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # checked below against the fingerprint instead
    target = _origin(url) + CA_ROUTE
    try:
        with urllib.request.urlopen(target, timeout=timeout, context=ctx) as resp:  # noqa: S310
            pem = resp.read(65536).decode("ascii", errors="replace")
    except OSError as exc:
        raise TlsError(
            f"could not fetch the lab CA from {target} ({exc}); is the provider up?"
        ) from None
    got = ca_fingerprint(pem)
    if _norm(got) != _norm(fingerprint):
        raise TlsError(
            f"the CA served by {_origin(url)} has fingerprint {got}, not the one you were given; "
            "do not trust it: check the address and the fingerprint with the instructor"
        )
    return _first_pem(pem)


# ======================================================================================== trust
def _bundle_dir() -> Path:
    d = (
        Path(tempfile.gettempdir())
        / f"sharelab-trust-{os.getuid() if hasattr(os, 'getuid') else 0}"
    )
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def _base_roots() -> str:
    """The roots trusted before the lab CA: a bundle the environment already names (a company's proxy
    CA...), else certifi's."""
    import certifi

    mine = str(_bundle_dir())
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(var, "")
        if path and not path.startswith(mine) and Path(path).is_file():
            return Path(path).read_text(encoding="ascii", errors="replace")
    return Path(certifi.where()).read_text(encoding="ascii", errors="replace")


def _read_pem(ca: str | os.PathLike[str]) -> str:
    text = str(ca)
    if "-----BEGIN" not in text:
        text = Path(ca).expanduser().read_text(encoding="ascii", errors="replace")
    return _first_pem(text)


def write_bundle(*cas: str | os.PathLike[str]) -> Path:
    """A CA bundle file: certifi's roots + ``cas`` (PEM texts or paths) + every CA trusted so far here.

    The file is named by its content in a private per-user temporary directory, so processes share it.
    """
    for ca in cas:
        pem = _read_pem(ca)
        _TRUSTED[ca_fingerprint(pem)] = pem
    body = _base_roots().rstrip("\n") + "\n" + "".join(_TRUSTED.values())
    name = hashlib.sha256(body.encode()).hexdigest()[:16]
    bundle = _bundle_dir() / f"bundle-{name}.pem"
    if not bundle.exists():
        tmp = bundle.with_name(bundle.name + f".{os.getpid()}.tmp")
        tmp.write_text(body, encoding="ascii")
        os.replace(tmp, bundle)
    return bundle


def trust_env(ca: str | os.PathLike[str]) -> dict[str, str]:
    """Environment variables that make a *new* process trust ``ca`` (for JupyterLab, papermill...).

    Set at process start, ``SSL_CERT_FILE`` reaches aiohttp too (its context is built at import).
    """
    bundle = str(write_bundle(ca))
    return {"REQUESTS_CA_BUNDLE": bundle, "SSL_CERT_FILE": bundle}


def trust_ca(ca: str | os.PathLike[str]) -> Path:
    """Make this process (and the processes it starts) trust ``ca`` on every HTTP stack the client uses.

    :param ca: the CA certificate: PEM text or the path of a PEM file.
    :return: the bundle file (certifi's roots + every CA trusted so far in this process).
    """
    global _BUNDLE
    bundle = write_bundle(ca)
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)  # requests (API calls)
    os.environ["SSL_CERT_FILE"] = str(
        bundle
    )  # Python ssl defaults, rustls-native-certs (delta format)
    try:
        import fsspec.config

        # aiohttp built its default context at import: give fsspec's HTTP filesystem our own
        ctx = ssl.create_default_context(cafile=str(bundle))
        fsspec.config.conf.setdefault("https", {})["ssl"] = ctx
        _clear_fsspec_cache()
    except ImportError:  # pragma: no cover - fsspec comes with delta-sharing
        pass
    _BUNDLE = bundle
    return bundle


def _clear_fsspec_cache() -> None:
    """Drop cached HTTP filesystems made before the trust changed (they hold the old SSL context)."""
    try:
        from fsspec.implementations.http import HTTPFileSystem
    except ImportError:  # pragma: no cover - aiohttp missing
        return
    HTTPFileSystem.clear_instance_cache()


def ca_path_for(profile_path: str | os.PathLike[str]) -> Path:
    """Where the lab CA of a profile is kept: ``alice.share`` -> ``alice.share.ca.pem`` beside it."""
    p = Path(profile_path).expanduser()
    return p.with_name(p.name + ".ca.pem")


def trust_profile(profile_path: str | os.PathLike[str]) -> Path | None:
    """Trust the CA kept beside a profile (see :func:`ca_path_for`); None when there is none."""
    ca = ca_path_for(profile_path)
    return trust_ca(ca) if ca.is_file() else None


# ======================================================================================== checks
_HINTS = {
    "unable to get local issuer certificate": "it is not signed by a CA you trust",
    "self-signed certificate in certificate chain": "it is signed by a CA you do not trust",
    "certificate signature failure": "its signature is invalid: the certificate was tampered with",
    "certificate has expired": "it has expired",
    "Hostname mismatch": "it is not made for this address",
    "IP address mismatch": "it is not made for this address",
    "permitted subtree violation": "the lab CA may not vouch for this address",
}


def check_tls(url: str, *, timeout: float = 5.0) -> str:
    """One TLS handshake with the server of ``url`` using the CAs trusted now; ``"ok"`` or a :class:`TlsError`.

    Unlike the official client (which retries a failed handshake for about 100 s), this answers at once,
    with a sentence saying what is wrong with the certificate.
    """
    u = urllib.parse.urlsplit(url)
    if u.scheme != "https" or not u.hostname:
        raise InvalidArgumentError(f"{url!r} is not an https:// URL")
    cafile = os.environ.get("SSL_CERT_FILE") or None
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection((u.hostname, u.port or 443), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=u.hostname):
                return "ok"
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or str(exc)
        hint = next((h for k, h in _HINTS.items() if k.lower() in why.lower()), why)
        raise TlsError(
            f"the certificate of {u.netloc} is not accepted ({why}): {hint}. Trust the lab CA with "
            "helpers.recipient.trust_ca(...) or check the fingerprint with the instructor"
        ) from None
    except ssl.SSLError as exc:
        raise TlsError(
            f"TLS with {u.netloc} failed ({exc.reason or exc}); is it an https server?"
        ) from None
    except OSError as exc:
        raise TlsError(f"cannot connect to {u.netloc} ({exc.strerror or exc})") from None
