"""The recipient's providers: its profile files, and the few protocol calls its SQL needs (plain REST).

A recipient knows a provider by the profile file the provider gave it (``*.share``: endpoint + bearer
token). :func:`load_providers` names them (a folder of profile files, one provider per file named by its
stem, or an explicit ``{name: profile}``); :class:`ProviderClient` lists shares, schemas and tables, asks
a table's current ``/version`` and ``/metadata``, and turns the server's refusals into one-line errors that
say what happened (401: the token, 403: the address or an expired URL, 404: not, or no longer, granted).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from helpers.exceptions import InvalidArgumentError, NotFoundError, ServerError, ShareAccessError
from helpers.recipient.profile_files import as_profile, profile_path

if TYPE_CHECKING:
    from delta_sharing.protocol import DeltaSharingProfile

    from helpers.recipient.profile_files import ProfileLike

__all__ = ["Provider", "ProviderClient", "load_providers", "refusal"]


@dataclass(frozen=True)
class Provider:
    """One provider as the recipient knows it: a name and a profile file."""

    name: str
    path: str  # the profile file (the client's URL prefix)
    profile: DeltaSharingProfile

    @property
    def endpoint(self) -> str:
        return str(self.profile.endpoint).rstrip("/")

    def url(self, share: str, schema: str, table: str) -> str:
        """The client's table URL ``<profile>#<share>.<schema>.<table>``."""
        return f"{self.path}#{share}.{schema}.{table}"


def load_providers(
    providers: str | os.PathLike[str] | Mapping[str, ProfileLike],
) -> dict[str, Provider]:
    """Providers by lower-cased name from a folder of ``*.share`` files, one profile file, or a mapping.

    :raises NotFoundError: a path that does not exist.
    """
    items: list[tuple[str, Any]]
    if isinstance(providers, Mapping):
        items = [(str(k), v) for k, v in providers.items()]
    else:
        path = Path(os.fspath(providers)).expanduser()
        if path.is_dir():
            items = [(p.stem, p) for p in sorted(path.glob("*.share"))]
        elif path.is_file():
            items = [(path.stem, path)]
        else:
            raise NotFoundError(
                f"{path} does not exist: give a folder of profile files (*.share) or one profile file"
            )
    out: dict[str, Provider] = {}
    for name, profile in items:
        out[name.lower()] = Provider(name, profile_path(profile), as_profile(profile))
    return out


def _message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body.get("errorCode") or body)
    except ValueError:
        return resp.text[:200] or resp.reason


def refusal(provider: Provider, status: int, message: str, what: str) -> ShareAccessError:
    """The one-line error for a server's refusal of ``what`` (a share or table name)."""
    why = {
        401: "the token was refused (expired, rotated or revoked): ask the provider for a new profile",
        403: "access denied (your address is not on the recipient's IP access list, or a signed file "
        "URL expired: run the query again)",
        404: "not shared with you, or no longer (the grant was revoked or the share dropped): "
        f"SHOW SHARES IN PROVIDER {provider.name} lists what you can read",
    }.get(status, "the server's message says what to change")
    return ShareAccessError(
        f"provider {provider.name} refused {what} (HTTP {status}: {message}): {why}", status=status
    )


class ProviderClient:
    """The REST calls of the recipient's SQL to one provider (``requests``, bearer token, no retries)."""

    def __init__(self, provider: Provider, *, timeout: float = 30.0) -> None:
        self.provider = provider
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {provider.profile.bearer_token}"
        self.session.headers["User-Agent"] = "sharelab-recipient-sql"

    def _get(self, path: str, what: str, params: dict[str, str] | None = None) -> requests.Response:
        url = f"{self.provider.endpoint}{path}"
        try:
            resp = self.session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServerError(
                f"provider {self.provider.name} does not answer at {self.provider.endpoint} "
                f"({type(exc).__name__}): is its sharing server running?"
            ) from exc
        if not resp.ok:
            raise refusal(self.provider, resp.status_code, _message(resp), what)
        return resp

    def _paged(self, path: str, what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {}
        for _ in range(10_000):
            body = self._get(path, what, params).json()
            items.extend(body.get("items") or [])
            token = body.get("nextPageToken")
            if not token:
                return items
            params = {"pageToken": str(token)}
        raise InvalidArgumentError(f"provider {self.provider.name} paginates {path} without end")

    def shares(self) -> list[str]:
        return sorted(i["name"] for i in self._paged("/shares", "the list of shares"))

    def has_share(self, share: str) -> bool:
        """Whether the share is visible with this profile (a 404 is False; other refusals raise)."""
        try:
            self._get(f"/shares/{share}", f"share {share}")
        except ShareAccessError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def schemas(self, share: str) -> list[str]:
        return sorted(i["name"] for i in self._paged(f"/shares/{share}/schemas", f"share {share}"))

    def tables(self, share: str, schema: str) -> list[str]:
        what = f"schema {share}.{schema}"
        return sorted(
            i["name"] for i in self._paged(f"/shares/{share}/schemas/{schema}/tables", what)
        )

    def version(self, share: str, schema: str, table: str) -> int:
        """The table's current version (``GET .../version``, the ``Delta-Table-Version`` header)."""
        resp = self._get(
            f"/shares/{share}/schemas/{schema}/tables/{table}/version",
            f"table {share}.{schema}.{table}",
        )
        return int(resp.headers["Delta-Table-Version"])

    def metadata(self, share: str, schema: str, table: str) -> tuple[int, dict[str, Any]]:
        """The table's version and ``metaData`` action (``GET .../metadata``)."""
        resp = self._get(
            f"/shares/{share}/schemas/{schema}/tables/{table}/metadata",
            f"table {share}.{schema}.{table}",
        )
        meta: dict[str, Any] = {}
        for line in resp.text.splitlines():
            if line.strip() and "metaData" in (obj := json.loads(line)):
                meta = obj["metaData"]
        return int(resp.headers.get("Delta-Table-Version", -1)), meta
