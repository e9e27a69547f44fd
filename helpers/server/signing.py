"""HMAC-SHA256 signatures for file URLs and for page / refresh tokens.

The server hands out download URLs that authorise themselves (the official client sends no bearer token
to them): ``/files/<token>?exp=<ms>&X-Amz-Signature=<hex>``. ``<token>`` is an opaque URL-safe encoding of
(table id, version, file path); the signature covers the token and the expiry, so a URL is valid for one
file of one table version until it expires. The parameter is called ``X-Amz-Signature`` because the
delta-kernel reader only fetches http(s) URLs that *look* pre-signed (protocol reference §6.5).

Page tokens and refresh tokens are the same construction over a JSON payload bound to the table, the
version, a checksum of the query parameters and an expiry.

The key lives in ``server/secret.key`` (32 random bytes, mode 0600), created once per lab home, so URLs
survive a server restart and are invalidated by deleting the file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from helpers.exceptions import InvalidArgumentError

__all__ = ["FileRef", "Signer", "load_or_create_key", "params_checksum"]

try:  # OpenSSL's HMAC object without the Python wrapper of hmac.HMAC (hot: one copy per file URL)
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _hmac_new = hmac.new  # type: ignore[assignment]  # same call, a wrapper of the same MAC

KEY_BYTES = 32
_TOKEN_TAG = b"token\n"


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=4096)
def _header(table_id: str, version: int, share: str, schema: str, table: str) -> str:
    return _b64e(
        json.dumps([table_id, version, share, schema, table], separators=(",", ":")).encode()
    )


@lru_cache(maxsize=4096)
def _read_header(head: str) -> tuple[str, int, str, str, str]:
    """The table version a token's header names (cached: every file of a version shares it)."""
    table_id, version, share, schema, table = json.loads(_b64d(head))
    return str(table_id), int(version), str(share), str(schema), str(table)


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """Read the HMAC key at ``path``, creating it (mode 0600, exclusively) when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 16:
            raise InvalidArgumentError(
                f"The server key {path} is damaged (too short); delete it and restart the server "
                "(previously issued file URLs will stop working)"
            ) from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    os.chmod(path, 0o600)
    return key


def params_checksum(params: dict[str, Any]) -> str:
    """A short stable checksum of query parameters (what a page / refresh token is bound to)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class FileRef:
    """What a signed file URL grants: one file of one version of one table.

    :param table_id: the shared table's id (catalog).
    :param version: the table version the file belongs to.
    :param path: the file's path as written in the Delta log (relative, URL-encoded).
    :param share: share name (to find the table again).
    :param schema: schema name.
    :param table: table name.
    """

    table_id: str
    version: int
    path: str
    share: str
    schema: str
    table: str


class Signer:
    """Signs and verifies file URLs and opaque tokens with one HMAC key.

    :param key: the secret key bytes.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        # the HMAC state after the key, copied per message: no key schedule per signature (a third
        # of the cost of hmac.digest on a download URL)
        self._keyed = _hmac_new(key, b"", digestmod="sha256")

    def _mac(self, data: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(data)
        return str(mac.hexdigest())

    # ------------------------------------------------------------------ file URLs
    def file_token(self, ref: FileRef) -> str:
        """The opaque, URL-safe token naming ``ref`` (not secret; the signature authorises it).

        ``<base64url(table header)>.<base64url(path)>``; the header is cached per table version.
        """
        return f"{self.token_header(ref.table_id, ref.version, ref.share, ref.schema, ref.table)}.{self.token_path(ref.path)}"

    @staticmethod
    def token_header(table_id: str, version: int, share: str, schema: str, table: str) -> str:
        """The table-version part of a file token (before the ``.``); cached."""
        return _header(table_id, version, share, schema, table)

    @staticmethod
    def token_path(path: str) -> str:
        """The file part of a file token (after the ``.``): it does not depend on the version, so callers
        may cache it per file across versions."""
        return _b64e(path.encode())

    def file_signer(
        self, header: str, expires_ms: int, recipient: str = ""
    ) -> Callable[[bytes], str]:
        """:meth:`sign_file` of ``f"{header}.{path_part}"`` as a function of ``path_part`` (ASCII bytes).

        For signing many files of one table version at once: the constant parts of the message are
        encoded once, each file costs one HMAC call (the signatures are identical to :meth:`sign_file`'s).
        """
        head = b"file\n" + header.encode("ascii") + b"."
        tail = b"\n" + str(expires_ms).encode() + b"\n" + recipient.encode("utf-8")
        # the HMAC state after the key and the common prefix is computed once and copied per file: about
        # half the cost of a full HMAC per URL
        base = _hmac_new(self._key, head, digestmod="sha256")

        def sign(path_part: bytes) -> str:
            mac = base.copy()
            mac.update(path_part + tail)
            return mac.hexdigest()

        return sign

    def sign_file(self, token: str, expires_ms: int, recipient: str = "") -> str:
        """The hex signature of a file token, its expiry and the recipient it was minted for (audit)."""
        return self._mac(
            b"file\n"
            + token.encode("ascii")
            + b"\n"
            + str(expires_ms).encode()
            + b"\n"
            + recipient.encode("utf-8")
        )

    def verify_file(
        self,
        token: str,
        expires: str,
        signature: str,
        now_ms: int | None = None,
        recipient: str = "",
    ) -> FileRef:
        """Check a download URL's signature and expiry and return what it grants.

        :raises PermissionError: tampered, expired or malformed (the caller answers 403 without details).
        """
        try:
            exp = int(expires)
            expected = self.sign_file(token, exp, recipient)
        except (ValueError, UnicodeEncodeError):
            raise PermissionError("malformed") from None
        if not hmac.compare_digest(expected, (signature or "").lower()):
            raise PermissionError("bad signature")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if exp < now:
            raise PermissionError("expired")
        try:
            head, _, path_part = token.partition(".")
            table_id, version, share, schema, table = _read_header(head)
            path = _b64d(path_part).decode("utf-8")
            return FileRef(table_id, version, path, share, schema, table)
        except (ValueError, TypeError):
            raise PermissionError("malformed") from None

    # ------------------------------------------------------------------ page / refresh tokens
    def make_token(self, kind: str, payload: dict[str, Any], ttl_seconds: float) -> str:
        """An opaque signed token of ``kind`` carrying ``payload``, valid for ``ttl_seconds``."""
        body = dict(payload)
        body["k"] = kind
        body["e"] = int((time.time() + ttl_seconds) * 1000)
        data = _b64e(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        return data + "." + self._mac(_TOKEN_TAG + data.encode())

    def read_token(self, kind: str, token: str, what: str = "pageToken") -> dict[str, Any]:
        """Verify a token made by :meth:`make_token` and return its payload.

        :raises InvalidArgumentError: malformed, tampered, of another kind, or expired.
        """
        data, _, mac = (token or "").partition(".")
        if (
            not data
            or not mac
            or not hmac.compare_digest(self._mac(_TOKEN_TAG + data.encode("ascii", "replace")), mac)
        ):
            raise InvalidArgumentError(f"invalid '{what}': it was not issued by this server")
        try:
            body = json.loads(_b64d(data))
        except ValueError:
            raise InvalidArgumentError(f"invalid '{what}': it cannot be decoded") from None
        if not isinstance(body, dict) or body.get("k") != kind:
            raise InvalidArgumentError(f"invalid '{what}': it was issued for another request")
        if int(body.get("e", 0)) < int(time.time() * 1000):
            raise InvalidArgumentError(
                f"the '{what}' has expired; start again without it to get a fresh one"
            )
        return body
