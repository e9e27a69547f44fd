"""The sharing service: the protocol logic behind the routes, one module per concern.

- :mod:`.core`: authentication, table lookups, URLs, head lines, warm-up (:class:`ServiceCore`);
- :mod:`.entries`: the per-table cache of file line templates;
- :mod:`.discovery`: share/schema/table listings, ``/version``, ``/metadata``;
- :mod:`.changes`: ``/changes`` and the per-commit action streams;
- :mod:`.query`: ``/query``;
- this module: signed downloads and activation links, and :class:`SharingService` itself.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request

from helpers.catalog import SharedTable
from helpers.exceptions import InvalidNameError, NotFoundError, SharelabError, TokenError
from helpers.profiles import profile_dict
from helpers.server.audit import AuditInfo
from helpers.server.errors import ApiError, not_found
from helpers.server.pinned import unpinned
from helpers.server.service.views import ViewsService

__all__ = ["SharingService"]


class SharingService(ViewsService):
    """The protocol logic; the Starlette routes are thin wrappers around it."""

    # -------------------------------------------------------------- downloads
    def resolve_download(
        self, token: str, exp: str, sig: str, info: AuditInfo, rcp: str = ""
    ) -> str:
        """The local path a signed URL grants, or a 403 :class:`ApiError` that reveals nothing."""
        denied = ApiError(
            403,
            "PERMISSION_DENIED",
            "This file URL is invalid or has expired; query the table again to get fresh URLs",
        )
        try:
            ref = self.signer.verify_file(token, exp, sig, recipient=rcp)
        except PermissionError:
            raise denied from None
        name = rcp.partition("\n")[0]  # url_identity: the recipient, then its access key
        info.recipient = name or None
        info.share, info.schema, info.table, info.version = (
            ref.share,
            ref.schema,
            ref.table,
            ref.version,
        )
        table: SharedTable
        try:
            table = self.download_table(ref.share, ref.schema, ref.table, name)
        except (NotFoundError, InvalidNameError):
            raise denied from None
        if table.id != ref.table_id:
            raise denied
        # revocation is immediate: the token that minted the URL, the grant, the table entry and the
        # partition filter must be as they were (a URL without an access key is refused as well)
        if not self.access_current(rcp, ref.share, ref.schema, ref.table):
            raise denied
        try:
            log_ = unpinned(self.table_log(table))  # the URL is signed for its version: no pin here
            if log_.is_object_store:  # its files are fetched from the store, never through here
                raise denied
            valid = ref.path in log_.snapshot(ref.version).paths
            if not valid:
                commit = log_.commit(ref.version)
                valid = any(
                    a["path"] == ref.path for a in (*commit.adds, *commit.removes, *commit.cdcs)
                )
            if not valid:  # a deletion vector file of that version's files
                valid = self.is_dv_file(log_, ref.version, ref.path)
            if not valid:
                raise denied
            path = log_.file_path(ref.path)
        except ApiError:
            raise
        except (SharelabError, OSError, ValueError):
            raise denied from None
        if not os.path.isfile(path):
            raise ApiError(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                "This file no longer exists (the table was vacuumed or rewritten); query the table again",
            )
        return path

    def activate(self, request: Request, code: str, info: AuditInfo) -> dict[str, Any]:

        with (
            self.catalog.db.transaction()
        ):  # refused by the IP access list: the redemption is undone
            try:
                recipient, issued = self.catalog.redeem_activation(code)
            except TokenError as exc:
                raise not_found(str(exc)) from None
            info.recipient = recipient.name
            self.check_address(request, recipient)
        return profile_dict(self.endpoint(request), issued)
