"""Profile files on the recipient's side: read, validate, write (0600), redeem an activation link, health check.

A recipient has nothing but a ``*.share`` file and an HTTP endpoint, so this module speaks only the open
protocol (no catalog, no server code).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import requests

from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    SharelabError,
    TokenError,
)
from helpers.recipient.trust import ca_path_for, check_tls, fetch_lab_ca, trust_ca, trust_profile

if TYPE_CHECKING:
    from delta_sharing.protocol import DeltaSharingProfile

    #: What every recipient call accepts as a profile: a path to a ``*.share`` file or a loaded profile.
    ProfileLike: TypeAlias = str | os.PathLike[str] | DeltaSharingProfile


def load_profile(path: str | os.PathLike[str]) -> DeltaSharingProfile:
    """Read and validate a Delta Sharing profile file.

    :param path: the ``*.share`` file (JSON with ``shareCredentialsVersion``, ``endpoint``, ``bearerToken``).
    :return: the client's :class:`delta_sharing.protocol.DeltaSharingProfile`.
    :raises NotFoundError: when the file does not exist.
    :raises InvalidArgumentError: when it is not a valid profile.
    """
    from delta_sharing.protocol import DeltaSharingProfile

    p = Path(path).expanduser()
    if not p.is_file():
        raise NotFoundError(
            f"profile file {p} does not exist; redeem the activation link the provider gave you "
            "(helpers.recipient.activate(link, path)) or pass the path of an existing *.share file"
        )
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"profile file {p} is not JSON ({exc}); ask the provider for a new one"
        ) from exc
    check_profile_json(raw, str(p))
    if str(raw.get("endpoint", "")).startswith("https://"):
        trust_profile(p)  # a workshop's lab CA kept beside the profile (``<profile>.ca.pem``)
    try:
        return DeltaSharingProfile.read_from_file(str(p))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(
            f"profile file {p} is not a valid Delta Sharing profile: {exc}"
        ) from exc


def check_profile_json(raw: object, where: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``raw`` (parsed JSON) looks like a profile."""
    if not isinstance(raw, dict):
        raise InvalidArgumentError(
            f"{where} is not a Delta Sharing profile (expected a JSON object)"
        )
    missing = [k for k in ("shareCredentialsVersion", "endpoint") if k not in raw]
    if missing:
        raise InvalidArgumentError(
            f"{where} is not a Delta Sharing profile: missing {', '.join(missing)}"
        )
    if raw.get("shareCredentialsVersion") == 1 and not raw.get("bearerToken"):
        raise InvalidArgumentError(f"{where} is a version-1 profile without a bearerToken")


def as_profile(profile: ProfileLike) -> DeltaSharingProfile:
    """The profile object for a path (validated) or an object."""
    from delta_sharing.protocol import DeltaSharingProfile

    if isinstance(profile, DeltaSharingProfile):
        return profile
    return load_profile(profile)


def profile_path(profile: ProfileLike) -> str:
    """The profile as the client's URL prefix needs it (a file path); profiles in memory are spilled."""
    from delta_sharing.protocol import DeltaSharingProfile

    if isinstance(profile, DeltaSharingProfile):
        fd, tmp = tempfile.mkstemp(prefix="sharelab-profile-", suffix=".share")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "shareCredentialsVersion": profile.share_credentials_version,
                    "endpoint": profile.endpoint,
                    "bearerToken": profile.bearer_token,
                },
                fh,
            )
        atexit.register(_unlink_quietly, tmp)
        return tmp
    p = Path(profile).expanduser()
    load_profile(p)  # validate early, with our error messages
    return str(p.resolve())


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_profile(
    profile: dict[str, Any], out_path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a profile dict as a ``*.share`` file readable by its owner only (mode 0600).

    The file is written to a temporary name (created 0600) and renamed, so a crash never leaves a
    half-written or world-readable profile behind.

    Note the argument order: the profile first, then the path (the recipient's form, kept for
    notebooks), with an ``overwrite`` guard; the provider's :func:`helpers.profiles.write_profile`
    takes ``(path, profile)`` and always replaces. The recipient cannot use the provider's one: it
    imports nothing from the provider side.

    :raises AlreadyExistsError: when ``out_path`` exists and ``overwrite`` is false.
    """
    check_profile_json(profile, "the profile")
    out = Path(out_path).expanduser()
    if out.exists() and not overwrite:
        raise AlreadyExistsError(
            f"{out} exists already; pass overwrite=True or choose another path"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(profile, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, out)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    os.chmod(out, 0o600)
    return out


def activate(
    activation_url: str,
    out_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    timeout: float = 30.0,
) -> Path:
    """Redeem a one-time activation link and save the profile it returns (mode 0600).

    The target is checked *before* the link is fetched: an activation can be redeemed only once, so
    we never consume it when the profile could not be saved.

    :param activation_url: the link the provider shared (``.../delta-sharing/activation/<code>``).
    :param out_path: where to write the profile file.
    :param overwrite: replace an existing file at ``out_path``.
    :return: the path written.
    :raises AlreadyExistsError: ``out_path`` exists and ``overwrite`` is false (the link is left unused).
    :raises TokenError: the link is unknown, expired or was used already.
    """
    out = Path(out_path).expanduser()
    if out.exists() and not overwrite:
        raise AlreadyExistsError(
            f"{out} exists already; the activation link was NOT used. Pass overwrite=True or another path"
        )
    if not re.match(r"^https?://", activation_url or ""):
        raise InvalidArgumentError(
            f"activation link {activation_url!r} is not an http(s) URL; copy the whole link from "
            "DESCRIBE RECIPIENT"
        )
    try:
        resp = requests.get(activation_url, timeout=timeout)
    except requests.RequestException as exc:
        raise SharelabError(
            f"could not reach {activation_url} ({exc.__class__.__name__}); is the provider's server running?"
        ) from exc
    if resp.status_code != 200:
        message = _error_message(resp)
        if resp.status_code in (401, 403, 404, 410):
            raise TokenError(
                f"activation failed ({resp.status_code}: {message}); activation links work once: ask the "
                "provider for a new one"
            )
        raise SharelabError(f"activation failed ({resp.status_code}: {message})")
    try:
        profile = resp.json()
    except ValueError as exc:
        raise SharelabError(f"activation at {activation_url} did not return JSON") from exc
    return write_profile(profile, out, overwrite=overwrite)


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body.get("errorCode") or body)
    except ValueError:
        return resp.text[:200] or resp.reason


def check_profile(profile: ProfileLike, *, timeout: float = 5.0) -> str:
    """A quick, non-retrying health check of a profile: ``"ok"``, ``"unauthorized"`` or ``"unreachable"``.

    The official client retries connection errors with exponential backoff for about 100 s; a notebook
    that only wants to know whether a profile still works should not wait that long.
    """
    p = as_profile(profile)
    try:
        resp = requests.get(
            f"{p.endpoint.rstrip('/')}/shares",
            timeout=timeout,
            headers={"Authorization": f"Bearer {p.bearer_token}"},
        )
    except requests.RequestException:
        return "unreachable"
    if resp.status_code == 200:
        return "ok"
    return "unauthorized" if resp.status_code in (401, 403) else f"error {resp.status_code}"


def activate_with_ca(
    activation_url: str,
    out_path: str | os.PathLike[str],
    fingerprint: str,
    *,
    overwrite: bool = False,
) -> Path:
    """The attendee's one step over TLS: check and trust the lab CA, then redeem the activation link.

    The CA is saved beside the profile (:func:`ca_path_for`), so :func:`trust_profile` trusts it again in a
    new kernel; the activation itself runs over verified TLS.

    :param fingerprint: the lab CA's SHA-256 fingerprint, as shown by ``sharelab start --tls`` and on the
        instructor's screen.
    """
    out = Path(out_path).expanduser()
    if out.exists() and not overwrite:
        raise InvalidArgumentError(
            f"{out} exists already; the activation link was NOT used. Pass overwrite=True or another path"
        )
    pem = fetch_lab_ca(activation_url, fingerprint)
    trust_ca(pem)
    check_tls(activation_url)
    path = activate(activation_url, out, overwrite=overwrite)
    ca = ca_path_for(path)
    ca.write_text(pem, encoding="ascii")
    return path
