"""Recipient profiles: a bearer token and the server's endpoint in a version-1 Delta Sharing profile file.

:func:`issue_profile` is the one place that issues a token and writes its profile; the CLI, the labs, the
server's activation page and the tests go through it (or through :func:`profile_dict` when the token comes
from elsewhere, e.g. a redeemed activation). Profile files are written with mode 0600, atomically.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helpers.catalog import Catalog, IssuedToken, validate_endpoint
from helpers.exceptions import InvalidArgumentError

__all__ = ["IssuedProfile", "issue_profile", "profile_dict", "write_profile"]


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def profile_dict(endpoint: str, issued_token: IssuedToken) -> dict[str, Any]:
    """A version-1 Delta Sharing profile for ``issued_token`` (protocol §7).

    :param endpoint: the server's sharing endpoint, e.g. ``http://127.0.0.1:8080/delta-sharing/``.
    """
    validate_endpoint(endpoint)
    return {
        "shareCredentialsVersion": 1,
        "endpoint": endpoint,
        "bearerToken": issued_token.token,
        "expirationTime": _iso_z(issued_token.info.expires_at),
    }


def _check_target(path: str | os.PathLike[str]) -> Path:
    target = Path(path).expanduser()
    if target.is_dir():
        raise InvalidArgumentError(
            f"{target} is a directory; give a file name such as {target}/recipient.share"
        )
    return target


def write_profile(path: str | os.PathLike[str], profile: Mapping[str, Any]) -> Path:
    """Write a profile file with mode 0600 (never readable by others, even briefly); return its path.

    The file is written to a temporary sibling created 0600 and renamed over ``path``.
    """
    target = _check_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the umask is odd; 0600 can only be narrowed by it anyway
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(profile), handle)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target.resolve()


@dataclass(frozen=True)
class IssuedProfile:
    """A token issued by :func:`issue_profile`, its profile and the file it was written to (if any)."""

    token: IssuedToken
    profile: dict[str, Any]
    path: Path | None


def issue_profile(
    catalog: Catalog,
    recipient: str,
    endpoint: str,
    *,
    out: str | os.PathLike[str] | None = None,
    lifetime_seconds: float | None = None,
) -> IssuedProfile:
    """Issue a new token for ``recipient`` and build its profile; write it to ``out`` (0600) when given.

    The endpoint and ``out`` are checked before the token is issued, so a bad URL or a directory leaves no
    orphan token behind. A recipient keeps at most two live tokens: a third expires the oldest.

    :raises NotFoundError: unknown recipient. :raises InvalidArgumentError: bad endpoint, lifetime or ``out``.
    """
    validate_endpoint(endpoint)
    if out is not None:
        _check_target(out)
    issued = catalog.issue_token(recipient, lifetime_seconds)
    profile = profile_dict(endpoint, issued)
    path = write_profile(out, profile) if out is not None else None
    if path is not None:
        _copy_lab_ca(catalog, endpoint, path)
    return IssuedProfile(token=issued, profile=profile, path=path)


def _copy_lab_ca(catalog: Catalog, endpoint: str, path: Path) -> None:
    """Over TLS with the lab home's own CA, keep the CA beside the profile (``<profile>.ca.pem``): the
    recipient helpers trust it when they load the profile (:mod:`helpers.recipient.trust`)."""
    ca = catalog.path.parent / "tls" / "ca.pem"
    if endpoint.startswith("https://") and ca.is_file():
        target = path.with_name(path.name + ".ca.pem")
        target.write_bytes(ca.read_bytes())
        target.chmod(0o644)
