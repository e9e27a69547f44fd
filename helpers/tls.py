"""TLS for the provider: a local certificate authority per lab home and a server certificate it signs.

``prepare_tls(home)`` makes, once per lab home, a **lab CA** (``tls/ca.pem`` + ``tls/ca.key``, ECDSA P-256, 10
years) and a **server certificate** (``tls/server.pem`` = leaf + CA, ``tls/server.key``, 1 year) whose
subject alternative names are this machine's names and addresses (``localhost``, ``127.0.0.1``, ``::1``, the
hostname, the interfaces' addresses) plus any extra names or addresses given. The server certificate is made
again when a name is missing or it expires within 30 days; the CA stays, so attendees trust it once.

The CA is **name-constrained** (:data:`LOCAL_DOMAINS`, :data:`LOCAL_NETWORKS`, plus the machine's own names
and public addresses when it was made): an attendee who trusts it can never be fooled by it for a public
site. A name outside the constraints needs a new CA (a new fingerprint, printed by ``sharelab start
--tls``); that is the one case the CA is replaced.

``prepare_tls(home, cert=F, key=F)`` uses a given certificate (chain) and key instead (checked to match).
:func:`fingerprint` is the SHA-256 of a certificate's DER (``openssl x509 -fingerprint -sha256`` format),
the value attendees compare aloud; :func:`spki_sha256_b64` is what Chromium's
``--ignore-certificate-errors-spki-list`` takes.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from helpers.exceptions import InvalidArgumentError

__all__ = [
    "TlsFiles",
    "ca_pem",
    "client_context",
    "fingerprint",
    "machine_names",
    "prepare_tls",
    "spki_sha256_b64",
    "tls_dir",
]

CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_BEFORE = timedelta(days=30)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TlsFiles:
    """The files the server serves with, and what attendees check.

    :param cert: the certificate chain the server sends (leaf first).
    :param key: its private key (mode 0600).
    :param ca: the lab CA certificate attendees trust (None for a given certificate without a lab CA).
    :param fingerprint: SHA-256 fingerprint of the CA (of the chain's last certificate when given).
    :param names: DNS names in the leaf's SANs; ``addresses`` the IP addresses.
    """

    cert: Path
    key: Path
    ca: Path | None
    fingerprint: str
    names: tuple[str, ...] = field(default=())
    addresses: tuple[str, ...] = field(default=())
    renewed: bool = False

    def as_state(self) -> dict[str, object]:
        """The part written into ``server/server.json``."""
        return {
            "cert": str(self.cert),
            "ca": str(self.ca) if self.ca else None,
            "ca_fingerprint": self.fingerprint,
            "names": list(self.names),
            "addresses": list(self.addresses),
        }


# ======================================================================================== helpers
def tls_dir(home: str | os.PathLike[str]) -> Path:
    """``<lab home>/tls``: the lab CA and the server certificate."""
    return Path(home) / "tls"


def fingerprint(cert: x509.Certificate | bytes | str) -> str:
    """SHA-256 of the certificate's DER, as ``AB:CD:...`` (what ``openssl x509 -fingerprint -sha256`` prints)."""
    if isinstance(cert, str | bytes):
        data = cert.encode() if isinstance(cert, str) else cert
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else (x509.load_der_x509_certificate(data))
        )
    digest = cert.fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def spki_sha256_b64(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the SubjectPublicKeyInfo (Chromium's ``--ignore-certificate-errors-spki-list``)."""
    import base64

    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def ca_pem(files: TlsFiles) -> str:
    """The PEM attendees trust: the lab CA, else the last certificate of a given chain."""
    if files.ca is not None:
        return files.ca.read_text(encoding="ascii")
    chain = _load_chain(files.cert)
    return chain[-1].public_bytes(serialization.Encoding.PEM).decode()


def client_context(ca: str | os.PathLike[str]) -> ssl.SSLContext:
    """An SSL client context that trusts only ``ca`` (the server's own health checks)."""
    return ssl.create_default_context(cafile=os.fspath(ca))


def _split_names(values: Iterable[str]) -> tuple[list[str], list[IPAddress]]:
    names: list[str] = []
    addrs: list[IPAddress] = []
    for raw in values:
        v = raw.strip().strip("[]").lower()
        if not v:
            continue
        try:
            ip = ipaddress.ip_address(v.split("%")[0])
        except ValueError:
            if not all(part and len(part) < 64 for part in v.rstrip(".").split(".")):
                raise InvalidArgumentError(
                    f"{raw!r} is neither a host name nor an IP address"
                ) from None
            if v not in names:
                names.append(v.rstrip("."))
            continue
        if not ip.is_link_local and ip not in addrs:
            addrs.append(ip)
    return names, addrs


def machine_names(extra: Iterable[str] = ()) -> tuple[list[str], list[IPAddress]]:
    """This machine's DNS names and IP addresses (loopback, hostname, interfaces), then ``extra``."""
    values = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname()
    values += [host, socket.getfqdn()]
    with contextlib.suppress(OSError):
        values += [str(info[4][0]) for info in socket.getaddrinfo(host, None)]
    with contextlib.suppress(Exception):
        import psutil

        for addrs in psutil.net_if_addrs().values():
            values += [a.address for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)]
    values += list(extra)
    return _split_names(values)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_chain(path: Path) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"cannot read the certificate {path}: {exc}") from None
    return chain


def _sans(names: list[str], addrs: list[IPAddress]) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addrs]


# ======================================================================================== lab CA
#: Names and networks the lab CA may always vouch for: local names and private/test address ranges, so
#: a trusted lab CA never covers a public site, and a laptop that moves between networks keeps its CA.
LOCAL_DOMAINS = ("localhost", "local", "lan", "home.arpa", "internal", "test")
LOCAL_NETWORKS = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "192.0.2.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "2001:db8::/32",
)


def _constraints(names: list[str], addrs: list[IPAddress]) -> x509.NameConstraints:
    nets = [ipaddress.ip_network(n) for n in LOCAL_NETWORKS]
    dns = list(LOCAL_DOMAINS)
    dns += [n for n in names if not any(n == d or n.endswith("." + d) for d in dns)]
    nets += [
        ipaddress.ip_network(f"{a}/{a.max_prefixlen}")
        for a in addrs
        if not any(a.version == n.version and a in n for n in nets)
    ]
    return x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(n) for n in dns] + [x509.IPAddress(n) for n in nets],
        excluded_subtrees=None,
    )


def _make_ca(d: Path, names: list[str], addrs: list[IPAddress]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sharelab"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"sharelab lab CA ({host})"[:64]),
        ]
    )
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_constraints(names, addrs), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(d / "ca.key", _key_pem(key))
    _write_public(d / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").unlink(missing_ok=True)  # a new CA invalidates the old leaf


def _ca_covers(ca: x509.Certificate, names: list[str], addrs: list[IPAddress]) -> bool:
    try:
        nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return True
    permitted = nc.permitted_subtrees or []
    dns = {g.value.lower() for g in permitted if isinstance(g, x509.DNSName)}
    nets = [
        g.value
        for g in permitted
        if isinstance(g, x509.IPAddress)
        and isinstance(g.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
    ]
    ok_names = all(any(n == d or n.endswith("." + d) for d in dns) for n in names)
    ok_addrs = all(any(a in net for net in nets if net.version == a.version) for a in addrs)
    return ok_names and ok_addrs


def _load_ca(d: Path) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None:
    try:
        cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return None
    return cert, key


# ======================================================================================== server cert
def _leaf_ok(path: Path, ca: x509.Certificate, names: list[str], addrs: list[IPAddress]) -> bool:
    try:
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, IndexError, x509.ExtensionNotFound):
        return False
    if leaf.issuer != ca.subject or leaf.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return False
    have_names = set(san.get_values_for_type(x509.DNSName))
    have_addrs = set(san.get_values_for_type(x509.IPAddress))
    return set(names) <= have_names and set(addrs) <= have_addrs


def _make_leaf(
    d: Path,
    ca: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    names: list[str],
    addrs: list[IPAddress],
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cn = names[0] if names else str(addrs[0])
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(names, addrs)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(d / "server.key", _key_pem(key))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    _write_public(d / "server.pem", chain)


def _given(cert: Path, key: Path) -> TlsFiles:
    chain = _load_chain(cert)
    if not chain:
        raise InvalidArgumentError(f"{cert} holds no PEM certificate")
    try:
        pkey = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"cannot read the private key {key}: {exc}") from None
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if pkey.public_key().public_bytes(serialization.Encoding.DER, raw) != chain[
        0
    ].public_key().public_bytes(serialization.Encoding.DER, raw):
        raise InvalidArgumentError(f"the key {key} does not belong to the certificate {cert}")
    try:
        san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
        addrs = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names, addrs = (), ()
    return TlsFiles(cert.resolve(), key.resolve(), None, fingerprint(chain[-1]), names, addrs)


def prepare_tls(
    home: str | os.PathLike[str],
    *,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    extra_names: Iterable[str] = (),
) -> TlsFiles:
    """The certificate and key to serve with: a given pair, else the lab CA's server certificate.

    :param home: the lab home (the files go to ``<home>/tls``).
    :param cert: a PEM certificate chain (leaf first) to use instead of the lab CA; needs ``key``.
    :param extra_names: more host names or addresses for the server certificate (e.g. the LAN address in
        ``--public-url``).
    :raises InvalidArgumentError: a given pair that does not match, or only one of them given.
    """
    if (cert is None) != (key is None):
        raise InvalidArgumentError("--cert and --key go together: give both or neither")
    if cert is not None and key is not None:
        return _given(Path(cert), Path(key))
    d = tls_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    names, addrs = machine_names(extra_names)
    loaded = _load_ca(d)
    renewed = False
    if loaded is None or not _ca_covers(loaded[0], names, addrs):
        prior = _recorded_names(d)
        names, addrs = _split_names([*prior, *names, *map(str, addrs)])
        _make_ca(d, names, addrs)
        loaded = _load_ca(d)
        renewed = True
        assert loaded is not None
    ca, ca_key = loaded
    if not _leaf_ok(d / "server.pem", ca, names, addrs):
        _make_leaf(d, ca, ca_key, names, addrs)
    (d / "names.json").write_text(
        json.dumps({"names": names, "addresses": [str(a) for a in addrs]}, indent=2) + "\n"
    )
    return TlsFiles(
        d / "server.pem",
        d / "server.key",
        d / "ca.pem",
        fingerprint(ca),
        tuple(names),
        tuple(str(a) for a in addrs),
        renewed,
    )


def _recorded_names(d: Path) -> list[str]:
    """Names and addresses the previous CA covered (kept when a new CA must cover one more)."""
    try:
        data = json.loads((d / "names.json").read_text())
        return [str(v) for v in [*data.get("names", []), *data.get("addresses", [])]]
    except (OSError, ValueError, AttributeError):
        return []
