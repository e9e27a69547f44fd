"""File URLs that nginx checks itself (its ``secure_link`` module), so a download never reaches a replica.

With ``$SHARELAB_SECURE_LINK_PREFIX`` set (e.g. ``/_sharelab_link``) behind nginx, ``/query`` answers a
local file as ``<public url><prefix>/<path under the root>?md5=<hash>&expires=<epoch s>``. nginx checks the
hash and the expiry and serves the file with ``sendfile`` (ranges included): none of the official client's
~11 requests per file costs a replica anything, and the client reads as fast as from a static file server.

The hash is nginx's ``secure_link_md5 "$secure_link_expires$uri $sharelab_link_secret"``: MD5 (the only hash
nginx offers) over the expiry, the path and a secret derived from the signing key
(:func:`link_secret`; ``sharelab secure-link-conf FILE`` writes it as nginx's ``set`` line), so only a
holder of the key can mint a URL and every replica mints the same ones.

The trade, as with an object store's pre-signed URLs: such a URL stays valid until it expires, even when
its token or grant is revoked sooner (the ``/query`` that minted it was checked), and its downloads are in
nginx's access log rather than the audit table. Files of recipients with an IP access list, files outside
``$SHARELAB_SECURE_LINK_ROOT`` (default ``/``) and deletion-vector files keep the server-checked URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

__all__ = ["PREFIX_ENV", "ROOT_ENV", "SecureLinks", "link_secret", "nginx_conf_line", "write_conf"]

PREFIX_ENV = "SHARELAB_SECURE_LINK_PREFIX"
ROOT_ENV = "SHARELAB_SECURE_LINK_ROOT"
_LABEL = b"sharelab nginx secure_link v1"


def link_secret(key: bytes) -> str:
    """The secret nginx hashes into a link, derived from the signing key (the key itself never leaves)."""
    return hmac.new(key, _LABEL, hashlib.sha256).hexdigest()


def nginx_conf_line(key: bytes) -> str:
    """The nginx line that gives the ``secure_link`` location its secret."""
    return f'set $sharelab_link_secret "{link_secret(key)}";\n'


def write_conf(key: bytes, path: str | os.PathLike[str]) -> Path:
    """Write :func:`nginx_conf_line` to ``path`` (mode 0600, replaced atomically)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(nginx_conf_line(key))
    os.replace(tmp, target)
    return target


@dataclass(frozen=True)
class SecureLinks:
    """The link scheme: URL ``prefix`` nginx serves, the ``root`` directory it maps to, the ``secret``."""

    prefix: str
    root: str
    secret: str

    @classmethod
    def from_env(cls, key: bytes) -> SecureLinks | None:
        """The scheme ``$SHARELAB_SECURE_LINK_PREFIX`` / ``_ROOT`` ask for, else None (off)."""
        prefix = os.environ.get(PREFIX_ENV, "").strip().rstrip("/")
        if not prefix:
            return None
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        root = os.path.abspath(os.environ.get(ROOT_ENV, "").strip() or "/")
        return cls(prefix, root, link_secret(key))

    def uri(self, file_path: str) -> str | None:
        """The (decoded) URI path of a local file, or None when it lies outside the root."""
        rel = os.path.relpath(os.path.abspath(file_path), self.root)
        if rel == ".." or rel.startswith("../") or rel == ".":
            return None
        return f"{self.prefix}/{Path(rel).as_posix()}"

    def url(self, base: str, uri: str, expires: int) -> str:
        """The link of ``uri`` (from :meth:`uri`) under ``base`` (the public URL) valid until ``expires``
        (epoch seconds). nginx hashes the whole path it is asked for (``$uri``): a public URL with a path
        (``https://host/lab``) puts that path in front, in the link and in the hash."""
        parts = urlsplit(base)
        path = parts.path.rstrip("/") + uri
        digest = hashlib.md5(f"{expires}{path} {self.secret}".encode(), usedforsecurity=True)
        mac = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        return f"{parts.scheme}://{parts.netloc}{quote(path)}?md5={mac}&expires={expires}"

    def signer(
        self,
        base: str,
        exp_ms: int,
        file_path: Callable[[str], str],
        fallback: Callable[[str], str],
    ) -> Callable[[str], str]:
        """An ``add`` path -> its link (``fallback``'s server-checked URL for a file outside the root)."""
        expires = -(-exp_ms // 1000)  # nginx counts seconds; never before the reported expiry

        def sign(raw_path: str) -> str:
            uri = self.uri(file_path(raw_path))
            return fallback(raw_path) if uri is None else self.url(base, uri, expires)

        return sign
