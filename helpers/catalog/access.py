"""Access checks the sharing server makes at *use* time: who owns a token, and the access stamp.

- :meth:`AccessMixin.token_status`: the recipient and state (live, expired, revoked) of any token the
  catalog issued, so a refused request can still be audited under its recipient;
- :meth:`AccessMixin.access_stamp`: a short digest of everything that lets one token read one shared
  table (the token is live, the grant, the table entry and its id, its partition filter and the
  recipient property values the filter uses, history, start and pinned version). The server binds
  signed file URLs, page tokens and refresh tokens to the stamp at the time they are minted and checks it
  again when they are used: revoking the tokens or the grant, removing the table from the share or
  changing its partition filter (or the recipient's filtering property) changes the stamp, so every
  URL and token minted before stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from helpers.catalog import clock
from helpers.catalog.db import Database
from helpers.catalog.models import Recipient, SharedTable
from helpers.catalog.names import name_key
from helpers.catalog.rows import find_row
from helpers.catalog.tokens import TOKEN_PREFIX_CHARS, hash_token

__all__ = ["AccessMixin", "TokenStatus"]


@dataclass(frozen=True)
class TokenStatus:
    """A token the catalog knows: its id, its recipient, and ``live``, ``expired`` or ``revoked``."""

    token_id: str
    recipient: Recipient
    state: str


class AccessMixin:
    """Token ownership and access stamps of :class:`~helpers.catalog.Catalog`."""

    db: Database
    if TYPE_CHECKING:  # provided by SharesMixin

        def _shared_tables(self, conn: sqlite3.Connection, share: str) -> list[SharedTable]: ...

    def token_status(self, token: str | None) -> TokenStatus | None:
        """The owner and state of ``token`` (None when the catalog never issued it)."""
        if not token or not isinstance(token, str) or len(token) > 512:
            return None
        digest = hash_token(token)

        def body(conn: sqlite3.Connection) -> TokenStatus | None:
            for cand in conn.execute(
                "SELECT id, token_hash, recipient_id, expires_at, revoked_at FROM tokens "
                "WHERE prefix = ?",
                (token[:TOKEN_PREFIX_CHARS],),
            ):
                if not hmac.compare_digest(cand["token_hash"], digest):
                    continue
                row = conn.execute(
                    "SELECT * FROM recipients WHERE id = ?", (cand["recipient_id"],)
                ).fetchone()
                if row is None:
                    return None
                if cand["revoked_at"] is not None:
                    state = "revoked"
                elif not cand["expires_at"] > clock.now():
                    state = "expired"
                else:
                    state = "live"
                return TokenStatus(cand["id"], Recipient.from_row(row), state)
            return None

        return self.db.read(body)

    def access_stamp(self, token_id: str, share: str, schema: str, table: str) -> str | None:
        """The digest of what lets token ``token_id`` read ``share.schema.table`` now, or None when it
        may not (token not live, no grant). A name that is no table of the share (a view, or a table
        removed since) is stamped with the token and the grant only, so it never equals a table's stamp."""

        def body(conn: sqlite3.Connection) -> str | None:
            tok = conn.execute(
                "SELECT recipient_id, expires_at, revoked_at FROM tokens WHERE id = ?", (token_id,)
            ).fetchone()
            if tok is None or tok["revoked_at"] is not None or not tok["expires_at"] > clock.now():
                return None
            srow = find_row(conn, "shares", share)
            grant = (
                None
                if srow is None
                else conn.execute(
                    "SELECT share_id, granted_at FROM grants WHERE recipient_id = ? AND share_id = ?",
                    (tok["recipient_id"], srow["id"]),
                ).fetchone()
            )
            if srow is None or grant is None:
                return None
            rrow = conn.execute(
                "SELECT * FROM recipients WHERE id = ?", (tok["recipient_id"],)
            ).fetchone()
            recipient = Recipient.from_row(rrow)
            found = [
                t
                for t in self._shared_tables(conn, srow["name"])
                if (name_key(t.schema), name_key(t.name)) == (name_key(schema), name_key(table))
            ]
            facts: list[object] = [token_id, recipient.id, grant["share_id"], grant["granted_at"]]
            if found:  # else not a table of the share (a shared view): the token and grant alone
                t = found[0]
                facts += [
                    t.id,
                    str(t.location),
                    t.history,
                    t.start_version,
                    t.pinned_version,
                    [
                        [c.column, c.value, c.is_property, c.resolve(recipient)]
                        for c in t.partition_filter
                    ],
                ]
            blob = json.dumps(facts, separators=(",", ":"), default=str).encode()
            return hashlib.sha256(blob).hexdigest()[:24]

        return self.db.read(body)
