"""What a signed file URL was found to grant, remembered while the catalog's access generation holds.

The official client asks for the same signed URL about 11 times (HEADs, footer ranges, GETs it abandons),
and every check of :meth:`SharingService.resolve_download` (signature, table entry, access stamp, file of
the version, path inside the table root, IP access list) gives the same answer each time unless the
catalog changed access, the URL expired or the token expired. So the answer is kept per (URL, client
address) with the access generation it was read at (:mod:`helpers.catalog.generation`), the URL's expiry
and the token's expiry: a repeated request costs one one-row catalog read (the generation: a revocation
through any process or replica is seen at once) and two clock comparisons. Whether the file still exists
is checked by the caller's ``stat`` on every request.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

from starlette.requests import Request

from helpers.catalog import clock
from helpers.catalog.generation import GenerationCache
from helpers.server.audit import AuditInfo
from helpers.server.service import SharingService

__all__ = ["Granted", "GrantCache", "grant_cache", "url_key"]

UrlKey = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Granted:
    """A checked URL: the local file, when the URL and its token expire, and what the audit row names."""

    path: str
    url_expires_ms: int
    token_expires_at: float
    recipient: str | None
    share: str | None
    schema: str | None
    table: str | None
    version: int | None

    def fill(self, info: AuditInfo) -> None:
        info.recipient, info.share, info.schema = self.recipient, self.share, self.schema
        info.table, info.version = self.table, self.version


def url_key(request: Request) -> UrlKey:
    """What the answer depends on: the URL's token, expiry, signature and identity, and the address."""
    q = request.query_params
    return (
        request.path_params["token"],
        q.get("exp") or "",
        q.get("X-Amz-Signature") or "",
        q.get("rcp") or "",
        request.client.host if request.client else "",
    )


class GrantCache:
    """The remembered grants of one :class:`SharingService`."""

    def __init__(self) -> None:
        self._items = GenerationCache()

    def lookup(self, svc: SharingService, key: UrlKey, info: AuditInfo) -> str | None:
        """The file ``key`` was granted, if nothing changed since (one catalog read), else None."""
        generation = svc.catalog.access_generation()
        if generation is None:
            return None
        found: Granted | None = self._items.get(key, generation)
        if found is None:
            return None
        if found.url_expires_ms < time.time() * 1000 or not found.token_expires_at > clock.now():
            return None  # the full check answers (403, expired)
        found.fill(info)
        return found.path

    def remember(
        self, svc: SharingService, key: UrlKey, path: str, info: AuditInfo, generation: int | None
    ) -> None:
        """Keep the answer :meth:`SharingService.resolve_download` gave at ``generation`` for ``key``.

        Call it inside the read transaction of the checks, ``generation`` read first in it.
        """
        if generation is None:
            return
        # the identity is "<recipient>\n<token id>.<stamp>" (SharingService.url_identity)
        token_id = key[3].partition("\n")[2].partition(".")[0]
        facts = svc.catalog.access_facts(
            token_id, info.share or "", info.schema or "", info.table or ""
        )
        if facts is None or facts.generation != generation:
            return
        granted = Granted(
            path,
            int(key[1]),
            facts.expires_at,
            info.recipient,
            info.share,
            info.schema,
            info.table,
            info.version,
        )
        self._items.put(key, granted, generation)


_CACHES: weakref.WeakKeyDictionary[SharingService, GrantCache] = weakref.WeakKeyDictionary()


def grant_cache(svc: SharingService) -> GrantCache:
    """The grant cache of ``svc`` (made on first use)."""
    found = _CACHES.get(svc)
    if found is None:
        found = _CACHES.setdefault(svc, GrantCache())
    return found
